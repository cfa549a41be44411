// One error shape for every answer that is not a success, as OpenAI's API gives it:
// `{"error": {"message", "type", "param", "code"}}` with the HTTP status it goes with.

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: errorType(this.status), param: this.param, code: this.code } };
  }
}

/** OpenAI's error types by status. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}
