/** The README's configuration reference is checked against config/schema.ts (STYLE.md §14). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configSchema } from '../../src/config/schema.ts';

type Schema = { type?: string; properties?: Record<string, Schema>; additionalProperties?: Schema | boolean; items?: Schema };

/** Every leaf key path, written as the README writes them: `pools.<name>.targets`, `routes[].match.host`. */
function keyPaths(schema: Schema, prefix: string): string[] {
  const out: string[] = [];
  if (schema.properties) {
    for (const [key, sub] of Object.entries(schema.properties)) {
      const path = prefix ? `${prefix}.${key}` : key;
      const nested = keyPaths(sub, path);
      out.push(...(nested.length ? nested : [path]));
    }
  } else if (schema.type === 'object' && typeof schema.additionalProperties === 'object' && schema.additionalProperties.properties) {
    out.push(...keyPaths(schema.additionalProperties, `${prefix}.<name>`));
  } else if (schema.type === 'array' && schema.items?.properties) {
    out.push(...keyPaths(schema.items, `${prefix}[]`));
  }
  return out;
}

test('every config key is in the README configuration reference', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const reference = readme.slice(readme.indexOf('### Configuration reference'));
  const paths = keyPaths(configSchema as Schema, '');
  assert.ok(paths.length > 20, 'the walk found the schema keys');
  const missing = paths.filter((p) => !reference.includes(`| \`${p}\``));
  assert.deepEqual(missing, [], 'keys missing from README.md "Configuration reference"');
});
