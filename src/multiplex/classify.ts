/**
 * Maps an outbound failure (Node, undici, zlib or our own) to a per-item error code. Anything
 * not recognised counts as PROTOCOL: the target answered, or hung up, in a way we cannot use.
 */
import { ItemError } from './send.ts';
import type { ItemErrorCode } from './types.ts';

interface CodedError {
  code?: unknown;
  message?: unknown;
  errors?: unknown;
  cause?: unknown;
}

const BY_CODE: Record<string, ItemErrorCode> = {
  MANIFOLD_FORBIDDEN_TARGET: 'FORBIDDEN_TARGET',
  MANIFOLD_DNS: 'DNS',
  ENOTFOUND: 'DNS',
  EAI_AGAIN: 'DNS',
  EAI_FAIL: 'DNS',
  ENODATA: 'DNS',
  ECONNREFUSED: 'CONNECT',
  EHOSTUNREACH: 'CONNECT',
  ENETUNREACH: 'CONNECT',
  EHOSTDOWN: 'CONNECT',
  ENETDOWN: 'CONNECT',
  EADDRNOTAVAIL: 'CONNECT',
  ETIMEDOUT: 'TIMEOUT',
  UND_ERR_CONNECT_TIMEOUT: 'TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'TIMEOUT',
  EPROTO: 'TLS',
};

function codeOf(err: CodedError): string {
  if (typeof err.code === 'string') return err.code;
  // net.connect with several addresses fails with an AggregateError of the attempts.
  if (Array.isArray(err.errors) && err.errors.length > 0) return codeOf(err.errors[0] as CodedError);
  return '';
}

function messageOf(err: CodedError): string {
  if (typeof err.message === 'string' && err.message !== '') return err.message;
  if (Array.isArray(err.errors)) return err.errors.map((e) => messageOf(e as CodedError)).join('; ');
  return String(err);
}

export function classifyError(err: unknown): { code: ItemErrorCode; message: string } {
  if (err instanceof ItemError) return { code: err.code, message: err.message };
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as CodedError;
  const code = codeOf(e);
  let kind = BY_CODE[code];
  if (!kind && /^(ERR_TLS_|ERR_SSL_)|CERT|SELF_SIGNED|UNABLE_TO_/.test(code)) kind = 'TLS';
  return { code: kind ?? 'PROTOCOL', message: messageOf(e) };
}
