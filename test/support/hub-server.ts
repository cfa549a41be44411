// A stand-in for the Hugging Face Hub on 127.0.0.1, for tests (no test ever reaches the real Hub): it serves
// fixture folders as model repositories in the Hub's URL layout, as @huggingface/hub and Python's huggingface_hub
// request it:
//   GET  /api/models/{repo}[/revision/{rev}]      model info: sha (the commit) and siblings
//   GET  /api/models/{repo}/tree/{rev}[/{path}]   the file listing: size, git oid, and lfs { oid, size } for LFS files
//   HEAD|GET /{repo}/resolve/{rev}/{path}         small files: 200 with ETag and X-Repo-Commit; LFS files
//                                                 (*.safetensors): 302 to /cdn/{sha256}/{path} with X-Linked-Etag
//                                                 and X-Linked-Size, as the Hub redirects to its CDN
//   HEAD|GET /cdn/{sha256}/{path}                  the bytes of an LFS file (with X-Repo-Commit, see below)
// Byte responses honour Range (206, 416). A gated repository answers 401 GatedRepo to downloads without the token;
// unknown repositories, revisions and files answer 404 with the Hub's X-Error-Code. Faults can be injected per file
// (dropped connection, corrupted byte, slow trickle, stall), and every request is recorded so tests can count them.
// Run directly (`node dist/test/support/hub-server.js org/name=folder …`) it prints its URL and serves until killed;
// tools/make_hub_cache_fixture.py uses that to let huggingface_hub build a real cache.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

export interface RepoSpec {
  /** org/name */
  repo: string;
  /** Fixture folder whose top-level files are the repository's files. */
  dir: string;
  /** Downloads need `Authorization: Bearer {token}` (the model info and listing stay public, as on the Hub). */
  gated?: boolean;
  /** Tags besides the branch main, all pointing at the one commit. */
  tags?: string[];
}

export type Fault =
  /** Close the connection once the file's bytes up to offset `at` are sent (for `times` requests, default 1). */
  | { kind: 'drop'; file: string; at: number; times?: number }
  /** Flip one byte in the middle of every response of the file. */
  | { kind: 'corrupt'; file: string }
  /** Send the file in `chunk`-byte pieces, `delayMs` apart. */
  | { kind: 'slow'; file: string; chunk: number; delayMs: number }
  /** Send the bytes up to offset `at`, then nothing more, keeping the connection open. */
  | { kind: 'stall'; file: string; at: number };

export interface RequestRecord {
  method: string;
  path: string;
  authorization?: string;
  range?: string;
}

export interface HubServer {
  /** http://127.0.0.1:{port} */
  url: string;
  requests: RequestRecord[];
  /** Faults in force; tests push and clear them between calls. */
  faults: Fault[];
  /** The commit every revision of the repository points at. */
  commit(repo: string): string;
  /** GET requests of file bytes (resolve/ and cdn/ URLs). */
  fileGets(): RequestRecord[];
  close(): Promise<void>;
}

interface RepoFile {
  path: string;
  bytes: Buffer;
  /** The git blob id: of the content, or of the LFS pointer file for LFS files. */
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

interface Repo {
  spec: RepoSpec;
  commit: string;
  files: Map<string, RepoFile>;
}

const sha1 = (data: string | Buffer) => createHash('sha1').update(data).digest('hex');
const gitBlobId = (content: Buffer) => sha1(Buffer.concat([Buffer.from(`blob ${content.length}\0`), content]));

/** A folder as a repository: safetensors files in LFS (as on the Hub), a commit id derived from the content. */
function loadRepo(spec: RepoSpec): Repo {
  const files = new Map<string, RepoFile>();
  for (const name of fs.readdirSync(spec.dir).sort()) {
    const full = path.join(spec.dir, name);
    if (!fs.statSync(full).isFile()) continue;
    const bytes = fs.readFileSync(full);
    if (name.endsWith('.safetensors')) {
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const pointer = Buffer.from(
        `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${bytes.length}\n`,
      );
      files.set(name, {
        path: name,
        bytes,
        oid: gitBlobId(pointer),
        lfs: { oid: sha256, size: bytes.length, pointerSize: pointer.length },
      });
    } else files.set(name, { path: name, bytes, oid: gitBlobId(bytes) });
  }
  const listing = [...files.values()].map((f) => `${f.path} ${f.oid}`).join('\n');
  return { spec, commit: sha1(`commit ${spec.repo}\n${listing}`), files };
}

export async function startHubServer(specs: RepoSpec[], opts: { token?: string } = {}): Promise<HubServer> {
  const repos = new Map(specs.map((s) => [s.repo, loadRepo(s)]));
  const requests: RequestRecord[] = [];
  const faults: Fault[] = [];
  const sockets = new Set<Socket>();
  let base = '';

  const send = (res: http.ServerResponse, status: number, headers: Record<string, string>, body?: string) => {
    res.writeHead(status, {
      ...headers,
      ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}),
    });
    res.end(body);
  };
  const json = (res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) =>
    send(res, status, { 'Content-Type': 'application/json', ...headers }, JSON.stringify(value));
  const hubError = (res: http.ServerResponse, status: number, code: string, message: string) =>
    json(res, status, { error: message }, { 'X-Error-Code': code, 'X-Error-Message': message });

  const revisionOf = (repo: Repo, rev: string): string | null =>
    rev === 'main' || rev === 'HEAD' || rev === repo.commit || repo.spec.tags?.includes(rev) ? repo.commit : null;

  /** The file's bytes with Range and the faults in force; `extra` are headers of the route. */
  function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, f: RepoFile, extra: Record<string, string>) {
    const total = f.bytes.length;
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
      if (start >= total) {
        send(res, 416, { ...extra, 'Content-Range': `bytes */${total}` }, '');
        return;
      }
      status = 206;
    }
    const headers: Record<string, string> = {
      ...extra,
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(end - start + 1),
      'Accept-Ranges': 'bytes',
      ...(status === 206 ? { 'Content-Range': `bytes ${start}-${end}/${total}` } : {}),
    };
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    let body = f.bytes.subarray(start, end + 1);
    const mine = faults.filter((x) => x.file === f.path);
    if (mine.some((x) => x.kind === 'corrupt')) {
      body = Buffer.from(body);
      const i = Math.floor(body.length / 2);
      body[i] = body[i]! ^ 0xff;
    }
    const drop = mine.find((x) => x.kind === 'drop' && (x.times ?? 1) > 0 && x.at > start);
    const stall = mine.find((x) => x.kind === 'stall' && x.at >= start);
    const slow = mine.find((x) => x.kind === 'slow');
    if (drop?.kind === 'drop') {
      drop.times = (drop.times ?? 1) - 1;
      // A FIN, not a reset: everything written arrives, then the connection ends short of Content-Length.
      res.write(body.subarray(0, drop.at - start), () => res.socket?.end());
      return;
    }
    if (stall?.kind === 'stall') {
      res.write(body.subarray(0, stall.at - start)); // and then silence, until the client gives up
      return;
    }
    if (slow?.kind === 'slow') {
      let at = 0;
      const tick = () => {
        if (res.destroyed) return;
        const piece = body.subarray(at, at + slow.chunk);
        at += piece.length;
        if (at >= body.length) res.end(piece);
        else res.write(piece, () => setTimeout(tick, slow.delayMs));
      };
      tick();
      return;
    }
    res.end(body);
  }

  function route(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', base);
    const parts = url.pathname
      .split('/')
      .filter((p) => p !== '')
      .map(decodeURIComponent);
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      authorization: req.headers.authorization,
      range: req.headers.range,
    });
    // /cdn/{sha256}/{path}: an LFS object, where resolve/ redirects.
    if (parts[0] === 'cdn') {
      for (const repo of repos.values())
        for (const f of repo.files.values())
          if (f.lfs?.oid === parts[1] && f.path === parts.slice(2).join('/'))
            // X-Repo-Commit is not on the real CDN's answer: huggingface_hub follows a redirect to the same host
            // (the Hub's CDN is another host) and then wants it here.
            return sendBytes(req, res, f, { ETag: `"${f.lfs.oid}"`, 'X-Repo-Commit': repo.commit });
      return send(res, 404, {}, 'no such object');
    }
    const api = parts[0] === 'api' && parts[1] === 'models';
    const repoId = api ? parts.slice(2, 4).join('/') : parts.slice(0, 2).join('/');
    const rest = api ? parts.slice(4) : parts.slice(2);
    const repo = repos.get(repoId);
    if (!repo) return hubError(res, 404, 'RepoNotFound', 'Repository not found');

    if (api && (rest.length === 0 || rest[0] === 'revision')) {
      const commit = revisionOf(repo, rest[1] ?? 'main');
      if (!commit) return hubError(res, 404, 'RevisionNotFound', 'Invalid rev id');
      return json(res, 200, {
        _id: sha1(repo.spec.repo).slice(0, 24),
        id: repo.spec.repo,
        modelId: repo.spec.repo,
        sha: commit,
        private: false,
        gated: repo.spec.gated ? 'manual' : false,
        disabled: false,
        downloads: 0,
        likes: 0,
        tags: ['safetensors'],
        library_name: 'transformers',
        lastModified: '2025-01-01T00:00:00.000Z',
        createdAt: '2025-01-01T00:00:00.000Z',
        siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    if (api && rest[0] === 'tree') {
      const commit = revisionOf(repo, rest[1] ?? 'main');
      if (!commit) return hubError(res, 404, 'RevisionNotFound', 'Invalid rev id');
      if (rest.length > 2) return json(res, 200, []); // a subfolder: the fixtures have none
      return json(
        res,
        200,
        [...repo.files.values()].map((f) => ({
          type: 'file',
          oid: f.oid,
          size: f.lfs?.size ?? f.bytes.length,
          path: f.path,
          ...(f.lfs ? { lfs: f.lfs } : {}),
        })),
      );
    }
    if (!api && rest[0] === 'resolve' && rest.length >= 3) {
      if (repo.spec.gated && req.headers.authorization !== `Bearer ${opts.token}`)
        return hubError(res, 401, 'GatedRepo', 'Access to this model is restricted: you must accept its conditions');
      const commit = revisionOf(repo, rest[1]!);
      if (!commit) return hubError(res, 404, 'RevisionNotFound', 'Invalid rev id');
      const f = repo.files.get(rest.slice(2).join('/'));
      if (!f) return hubError(res, 404, 'EntryNotFound', 'Entry not found');
      if (f.lfs) {
        const location = `${base}/cdn/${f.lfs.oid}/${encodeURIComponent(f.path)}`;
        return send(
          res,
          302,
          {
            Location: location,
            ETag: `"${f.oid}"`,
            'X-Repo-Commit': commit,
            'X-Linked-Etag': `"${f.lfs.oid}"`,
            'X-Linked-Size': String(f.lfs.size),
          },
          '',
        );
      }
      return sendBytes(req, res, f, { ETag: `"${f.oid}"`, 'X-Repo-Commit': commit });
    }
    return send(res, 404, {}, 'not found');
  }

  const server = http.createServer(route);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  base = `http://127.0.0.1:${port}`;
  return {
    url: base,
    requests,
    faults,
    commit: (repo) => repos.get(repo)!.commit,
    fileGets: () =>
      requests.filter((r) => r.method === 'GET' && (r.path.includes('/resolve/') || r.path.startsWith('/cdn/'))),
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  };
}

// As a program: serve org/name=folder pairs until killed, the URL on the first line of stdout.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const specs = process.argv.slice(2).map((arg) => {
    const [repo, dir] = arg.split('=');
    return { repo: repo!, dir: dir! };
  });
  const server = await startHubServer(specs);
  process.stdout.write(`${server.url}\n`);
}
