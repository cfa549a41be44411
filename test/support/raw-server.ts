// A stand-in for GitHub's raw-file host on 127.0.0.1, for the dataset download tests: it serves
// /{owner}/{repo}/{commit}/{path} for every pinned source in src/method/sources.ts from the shared raw/ collection,
// read in place (never copied). It counts requests per path and can misbehave on purpose for one path: flip a byte,
// or cut the connection halfway through the body; or send every body slowly.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { FILE_SOURCES } from '../../src/method/sources.js';

export interface RawServer {
  /** The endpoint to put in SCALPEL_DATASETS_ENDPOINT, e.g. http://127.0.0.1:PORT */
  url: string;
  /** Requests received, by URL path. */
  requests: Map<string, number>;
  /** Total requests received. */
  count(): number;
  /** URL paths whose body gets one byte flipped (the 100th, or the last of a shorter file). */
  corrupt: Set<string>;
  /** URL paths whose connection is destroyed after half the body was sent (Content-Length says the whole). */
  drop: Set<string>;
  /** When set, every body is sent in `chunk`-byte pieces `delayMs` apart (so a client can be stopped mid-file). */
  slow: { chunk: number; delayMs: number } | null;
  close(): Promise<void>;
}

/** The URL path the server answers for a pinned source, as the client builds it. */
export function rawPath(s: { repo: string; commit: string; path: string }): string {
  return `/${s.repo}/${s.commit}/${s.path}`;
}

export async function startRawServer(rawDir: string): Promise<RawServer> {
  const files = new Map(FILE_SOURCES.map((s) => [rawPath(s), path.join(rawDir, s.file)]));
  const requests = new Map<string, number>();
  const corrupt = new Set<string>();
  const drop = new Set<string>();
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.set(url, (requests.get(url) ?? 0) + 1);
    const file = files.get(url);
    if (req.method !== 'GET' || file === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('404: Not Found');
      return;
    }
    const body = Buffer.from(fs.readFileSync(file));
    if (corrupt.has(url)) {
      const i = Math.min(99, body.length - 1);
      body[i] = body[i]! ^ 0x01;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
    if (drop.has(url)) {
      // Half the promised bytes, flushed, then the socket goes away: the client must see a broken download.
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (self.slow) {
      const { chunk, delayMs } = self.slow;
      let at = 0;
      const tick = () => {
        if (res.destroyed) return;
        const piece = body.subarray(at, at + chunk);
        at += piece.length;
        if (at >= body.length) res.end(piece);
        else res.write(piece, () => setTimeout(tick, delayMs));
      };
      tick();
      return;
    }
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const self: RawServer = {
    url: `http://127.0.0.1:${port}`,
    requests,
    count: () => [...requests.values()].reduce((a, b) => a + b, 0),
    corrupt,
    drop,
    slow: null,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
  return self;
}
