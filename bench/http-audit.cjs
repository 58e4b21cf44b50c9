// Runs graphql-http's server audit (the GraphQL-over-HTTP conformance suite) against the URL
// in argv[2]. bench/http-audit.sh installs graphql-http next to a copy of this file and starts
// the gateway; see bench/README.md.
//
// Prints one line per audit and a summary line; exits 1 unless every audit passed. Audits come
// in three levels: a failing MUST is an error ("failed"), a failing SHOULD a warning, a failing
// MAY a notice. The gateway means to pass all of them, so notices fail the run too.
'use strict';

const { serverAudits } = require('graphql-http');

const url = process.argv[2];
if (!url) {
  console.error('usage: node http-audit.cjs http://127.0.0.1:PORT/graphql');
  process.exit(2);
}

// Every request carries Apollo's preflight header: the gateway's CSRF rule refuses requests
// without a JSON content type otherwise, before the audit could see the answer it probes for.
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('apollo-require-preflight', 'true');
  return fetch(input, { ...init, headers });
};

function bodyPreview(text) {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat;
}

async function main() {
  const counts = { ok: 0, error: 0, warn: 0, notice: 0 };
  const label = { ok: 'ok', error: 'FAIL', warn: 'WARN', notice: 'NOTICE' };
  // One at a time, in the suite's order: the lines read the same on every run.
  for (const { id, name, fn } of serverAudits({ url, fetchFn })) {
    const result = await fn();
    counts[result.status] += 1;
    console.log(`${label[result.status].padEnd(6)} ${id} ${name}`);
    if (result.status !== 'ok') {
      const res = result.response;
      const body = await res.text().catch(() => '<unreadable>');
      console.log(`         ${result.reason}`);
      console.log(
        `         got ${res.status} ${res.headers.get('content-type') ?? '(no content-type)'}: ${bodyPreview(body)}`,
      );
    }
  }
  console.log(
    `audit: ${counts.ok} passed, ${counts.error} failed, ${counts.warn} warnings, ${counts.notice} notices`,
  );
  process.exit(counts.error + counts.warn + counts.notice === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error('audit: could not run:', err);
  process.exit(2);
});
