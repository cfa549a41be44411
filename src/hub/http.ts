// HTTP to the Hugging Face Hub: every request carries the token and a timeout, a network failure becomes a
// HubUnreachable (which the caller may answer from the cache), and the Hub's refusals (401/403/404/5xx) become
// one-line ScalpelErrors that say what to do.
import { ScalpelError } from '../errors.js';

/** Where and how to talk to the Hub. */
export interface HubHttp {
  /** The Hub's base URL, without a trailing slash ($HF_ENDPOINT, default https://huggingface.co). */
  endpoint: string;
  /** Sent as `Authorization: Bearer …` ($HF_TOKEN). */
  token?: string;
  /** Longest wait for the server's next bytes (headers or body), in ms ($SCALPEL_HUB_TIMEOUT_MS). */
  timeoutMs: number;
}

/**
 * The Hub could not be reached or stopped answering (refused, reset, DNS, timeout). Not a ScalpelError: the caller
 * decides whether the cache can answer instead, and words the message.
 */
export class HubUnreachable extends Error {
  override readonly name = 'HubUnreachable';
  constructor(
    readonly url: string,
    /** What went wrong, short: ECONNREFUSED, "no data for 30 s", … */
    readonly reason: string,
  ) {
    super(`${url}: ${reason}`);
  }
}

/** The short reason of a failed fetch: undici hides the system error code in `cause`. */
export function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer for ${timeoutMs / 1000} s (timeout)`;
  return e?.cause?.code ?? e?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** True for what fetch throws when the network, not the server's answer, failed. */
export function isNetworkError(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return err instanceof TypeError || name === 'TimeoutError' || name === 'AbortError';
}

/** The request headers: the token when there is one; `identity` so sizes on the wire are the file sizes. */
export function hubHeaders(http: HubHttp, extra?: HeadersInit): Headers {
  const headers = new Headers(extra);
  if (http.token) headers.set('Authorization', `Bearer ${http.token}`);
  headers.set('Accept-Encoding', 'identity');
  return headers;
}

/**
 * A one-line error for a response the Hub refused. `what` names the thing asked for (`org/name`, `org/name@rev`,
 * or a file). The Hub says which refusal it is in X-Error-Code; the status alone is the fallback.
 */
export async function refusal(res: Response, what: string, repo: string, http: HubHttp): Promise<ScalpelError> {
  const code = res.headers.get('x-error-code') ?? '';
  const page = `${http.endpoint}/${repo}`;
  await res.body?.cancel().catch(() => {});
  if (code === 'GatedRepo')
    return new ScalpelError(
      `${what}: gated repository (HTTP ${res.status}); accept its licence at ${page} and set HF_TOKEN to a token of that account`,
    );
  if (code === 'RevisionNotFound')
    return new ScalpelError(`${what}: no such revision (branch, tag or commit) in ${repo} (HTTP ${res.status})`);
  if (code === 'EntryNotFound')
    return new ScalpelError(`${what}: no such file in ${repo} (HTTP ${res.status}); the repository changed, run again`);
  if (code === 'RepoNotFound' || res.status === 404)
    return new ScalpelError(
      `${what}: no such local folder, and no such model repository on ${http.endpoint} (HTTP ${res.status})${http.token ? '' : '; if it is private, set HF_TOKEN'}`,
    );
  if (res.status === 401 || res.status === 403)
    return new ScalpelError(
      `${what}: access refused (HTTP ${res.status}); if the repository is gated, accept its licence at ${page}; set HF_TOKEN to a token that can read it`,
    );
  if (res.status === 429)
    return new ScalpelError(`${what}: ${http.endpoint} limits the request rate (HTTP 429); wait and run again`);
  return new ScalpelError(
    `${what}: ${http.endpoint} answered HTTP ${res.status} ${JSON.stringify(res.statusText)}; run again later`,
  );
}

/**
 * A fetch for @huggingface/hub's API calls: the token is added here (the client insists that tokens start with
 * "hf_", which organisation tokens do not), the whole call is bounded by the timeout (API answers are small), and
 * refusals are turned into ScalpelErrors before the client wraps them in its own generic error.
 */
export function apiFetch(http: HubHttp, what: string, repo: string): typeof fetch {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    let res: Response;
    try {
      res = await fetch(input, {
        ...init,
        headers: hubHeaders(http, init?.headers),
        signal: AbortSignal.timeout(http.timeoutMs),
      });
    } catch (err) {
      throw new HubUnreachable(url, networkReason(err, http.timeoutMs));
    }
    if (!res.ok) throw await refusal(res, what, repo, http);
    return res;
  };
}
