// Where the package's SQL lives, whether run from dist/ (compiled) or installed.
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

export const paths = {
  root,
  sql: `${root}sql/`,
  migrations: `${root}migrations/`,
};
