// Sends what a Node app sends, through the DSN given in SENTRY_DSN: an error
// with a cause, a message, an event with an attachment, a session, then
// flushes. Run by tests/e2e/errortrack_test.go.
const Sentry = require('@sentry/node');

Sentry.init({
  dsn: process.env.SENTRY_DSN,
  release: 'node-app@2.0.0',
  environment: 'e2e',
  tracesSampleRate: 1.0,
});

class PaymentError extends Error { constructor(m) { super(m); this.name = 'PaymentError'; } }
function charge(order) { throw new PaymentError(`card declined for order ${order}`); }
function checkout(order) {
  try { charge(order); } catch (e) { throw new Error(`checkout failed for order ${order}`, { cause: e }); }
}

(async () => {
  // Two orders: different values (the SDK's dedupe drops identical
  // repeats), one stack, so one issue.
  for (let i = 1; i <= 2; i++) {
    try { checkout(i); } catch (e) { Sentry.captureException(e); }
  }
  Sentry.captureMessage('node says hello');
  Sentry.withScope(scope => {
    scope.addAttachment({ filename: 'node.txt', data: 'node attachment' });
    Sentry.captureException(new Error('with attachment'));
  });
  Sentry.startSpan({ name: 'GET /checkout' }, () => {});
  const ok = await Sentry.flush(10000);
  await Sentry.close(5000);
  process.stdout.write(ok ? 'flushed\n' : 'not flushed\n');
})();
