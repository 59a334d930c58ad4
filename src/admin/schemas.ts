/**
 * Admin API bodies, params and query strings: every shape check of the admin API is here
 * (STYLE.md §9), in JSON schema that fastify compiles once. Pool definitions reuse the config
 * file's own pool schema, so a pool created through the API takes exactly the keys and
 * defaults a pool in the file does.
 */
import { AJV_CODE } from '../lib/ajv.ts';
import { NAME_PATTERN } from '../lib/names.ts';
import { poolSchema } from '../config/schema.ts';
import { isTargetUrl } from '../upstream/target-url.ts';

type Schema = Record<string, unknown>;

/** Options for fastify's ajv: strict shapes, defaults filled in, every error reported. */
export const AJV_OPTIONS = {
  customOptions: {
    allErrors: true,
    coerceTypes: false,
    removeAdditional: false,
    useDefaults: true,
    allowUnionTypes: true,
    strictRequired: false,
    keywords: ['errorMessage'],
    formats: { 'target-url': isTargetUrl },
    code: AJV_CODE,
  },
};

const NAME = NAME_PATTERN;
const poolProperties = (poolSchema as { properties: Record<string, Schema> }).properties;

export const targetBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: {
      type: 'string',
      format: 'target-url',
      description: 'Origin URL of the target, with an optional path prefix.',
    },
    weight: {
      type: 'integer',
      minimum: 1,
      maximum: 10000,
      default: 1,
      description: 'Relative weight (`weighted`).',
    },
    id: {
      type: 'string',
      pattern: '^[A-Za-z0-9._:-]+$',
      maxLength: 256,
      description: 'Stable id (default: host:port[/prefix]).',
    },
    drain: {
      type: 'boolean',
      description: 'Add it drained: no new attempts until `PATCH … {"drain": false}`.',
    },
  },
};

/** `PATCH /pools/:pool/targets/:id`: re-weight, drain or enable; at least one of them. */
export const targetPatchBody: Schema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    weight: {
      type: 'integer',
      minimum: 1,
      maximum: 10000,
      description: 'Relative weight (`weighted`).',
    },
    drain: {
      type: 'boolean',
      description: 'true: no new attempts (in-flight ones finish); false: takes traffic again.',
    },
  },
};

export const poolBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: NAME, description: 'Pool name.' },
    ...poolProperties,
    targets: { ...poolProperties.targets, default: [] },
  },
};

export const poolParams: Schema = {
  type: 'object',
  required: ['pool'],
  properties: { pool: { type: 'string', pattern: NAME } },
};

export const targetParams: Schema = {
  type: 'object',
  required: ['pool', 'id'],
  properties: { pool: { type: 'string', pattern: NAME }, id: { type: 'string', minLength: 1 } },
};

export const serverParams: Schema = {
  type: 'object',
  required: ['ip', 'port'],
  properties: {
    ip: { type: 'string', minLength: 1 },
    port: { type: 'string', pattern: '^[0-9]{1,5}$' },
  },
};

export const drainQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    wait: {
      type: 'string',
      enum: ['true', 'false', '1', '0'],
      description: 'Answer only once the target has no attempt in flight (or admin.drain_timeout passed).',
    },
  },
};

// ---- the queue of defer routes (issue 6; routes/queue.ts) ----

const JOB_STATE = { type: 'string', enum: ['pending', 'inflight', 'done', 'dead'] };
const PAGE = { type: 'string', pattern: '^[0-9]{1,4}$', description: 'Page size, 1 to 1000 (default 100).' };
const AFTER = { type: 'string', minLength: 1, description: 'Cursor: the `next` of the previous page.' };
const ROUTE = { type: 'string', pattern: NAME, description: 'Only this route.' };

/** Issue 16: `?scope=cluster` sums what every instance publishes; `instance` (default) is this one. */
const SCOPE = {
  type: 'string',
  enum: ['instance', 'cluster'],
  description: 'instance (default): this gateway; cluster: summed over the instances that are up.',
};

export const scopeQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { scope: SCOPE },
};

export const queueDepthQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { route: ROUTE, scope: SCOPE },
};

export const jobListQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { route: ROUTE, state: JOB_STATE, limit: PAGE, after: AFTER },
};

export const deadListQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { route: ROUTE, limit: PAGE, after: AFTER },
};

export const jobParams: Schema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64 } },
};

export const retryAllQuery: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { route: { ...ROUTE, description: 'Only the dead letters of this route (default: all).' } },
};
