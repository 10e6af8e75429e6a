// Errors the local server answers with: RFC 7807 problem JSON ([local]).
import type { FieldError } from './validate.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly errors?: FieldError[],
  ) {
    super(message);
  }
}

export const problem = (status: number, title: string, detail: string) => ({
  type: 'about:blank',
  title,
  status,
  detail,
});
