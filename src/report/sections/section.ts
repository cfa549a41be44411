// One part of the report: an anchor id, a heading for the table of contents, and its HTML body.
export interface Section {
  id: string;
  title: string;
  html: string;
}
