// Runs the acknowledgement function once under the fake Runtime, for tests written in other
// languages: reads {"env": {...}, "event": {...}} on stdin, prints
// {"status", "headers", "body", "writes"} on stdout.
'use strict';

const path = require('node:path');
const runtime = require('./fake-runtime');

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  runtime.install();
  const { handler } = require(path.join(__dirname, '..', 'ack.js'));
  const ctx = runtime.context(input.env || {}, input.failures || []);
  const response = await runtime.invoke(handler, ctx, input.event || {});
  process.stdout.write(
    JSON.stringify({
      status: response.statusCode,
      headers: response.headers,
      body: response.body,
      writes: ctx.writes,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
