// Lint: ESLint's and typescript-eslint's recommended rules (syntax-level, so fast; tsc does the
// type checking). Biome was the first choice, but its per-platform binaries are not all in the
// registry this project installs from, which breaks `npm ci` on the lock file.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'data/**', '**/dashboard/vendor/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  // The dashboard's page script runs in the browser, not in Node (issue 7).
  {
    files: ['src/admin/dashboard/**/*.js'],
    languageOptions: { sourceType: 'module', globals: { ...globals.browser } },
  },
);
