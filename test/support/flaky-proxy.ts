// A small HTTP proxy on 127.0.0.1 in front of a real server (in the tests, `scalpel serve`), for what a healthy
// server never does on request: it answers the first `failFirst` POSTs with 503 in OpenAI's error shape, then passes
// every request through unchanged. It records each request and the most requests it held open at once, so tests can
// see retries and the client's concurrency limit from the outside.
import * as http from 'node:http';

export interface ProxyRecord {
  method: string;
  path: string;
  status: number;
}

export interface FlakyProxy {
  /** http://127.0.0.1:{port} */
  url: string;
  requests: ProxyRecord[];
  /** Most requests in flight at once. */
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startFlakyProxy(target: string, opts: { failFirst: number }): Promise<FlakyProxy> {
  let failuresLeft = opts.failFirst;
  let inFlight = 0;
  const proxy: FlakyProxy = { url: '', requests: [], maxInFlight: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    inFlight++;
    proxy.maxInFlight = Math.max(proxy.maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const record: ProxyRecord = { method: req.method ?? '', path: req.url ?? '', status: 0 };
      proxy.requests.push(record);
      try {
        if (req.method === 'POST' && failuresLeft > 0) {
          failuresLeft--;
          record.status = 503;
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              error: { message: 'overloaded, try again', type: 'server_error', param: null, code: null },
            }),
          );
          return;
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers))
          if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v;
        const body = Buffer.concat(chunks);
        const upstream = await fetch(`${target}${req.url}`, {
          method: req.method,
          headers,
          body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
        });
        const text = Buffer.from(await upstream.arrayBuffer());
        record.status = upstream.status;
        res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
        res.end(text);
      } catch (e) {
        record.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(String(e));
      } finally {
        inFlight--;
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy: no address');
  proxy.url = `http://127.0.0.1:${address.port}`;
  proxy.close = () =>
    new Promise<void>((ok) => {
      server.close(() => ok());
      server.closeAllConnections(); // clients keep connections alive; close() alone would wait for them
    });
  return proxy;
}
