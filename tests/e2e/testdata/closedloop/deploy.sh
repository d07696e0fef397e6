#!/bin/sh
# deploy.sh: installs this checkout's app.py in $DEPLOY_ROOT/$SHIPLOOP_ENVIRONMENT
# and (re)starts it on $PORT. shiploop sets SHIPLOOP_* and SENTRY_RELEASE /
# SENTRY_ENVIRONMENT; the server inherits them, and sentry_sdk reads the
# SENTRY_* ones itself. SENTRY_DSN is a repository secret.
set -eu
dir="$DEPLOY_ROOT/$SHIPLOOP_ENVIRONMENT"
mkdir -p "$dir"
echo "deploying $SHIPLOOP_RELEASE to $SHIPLOOP_ENVIRONMENT on port $PORT (was ${SHIPLOOP_PREVIOUS_RELEASE:-nothing}, $SHIPLOOP_DEPLOY_KIND $SHIPLOOP_DEPLOY_ID)"

# Stop the release that runs now, if any.
if [ -f "$dir/app.pid" ]; then
  pid=$(cat "$dir/app.pid")
  if kill "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null; do
      i=$((i + 1))
      if [ "$i" -gt 100 ]; then
        kill -9 "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$dir/app.pid"
fi

cp app.py "$dir/app.py"
echo "$SHIPLOOP_RELEASE" > "$dir/RELEASE"
cd "$dir"
# The deploy steps say `detach: true` (docs/architecture.md, "A deploy step
# that starts a service"): what this script starts in the background keeps
# running when the step ends. Its output goes to a file of its own.
nohup /usr/bin/python3 app.py >>app.log 2>&1 </dev/null &
echo $! > app.pid

# Wait until it answers.
i=0
until /usr/bin/python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 150 ]; then
    echo "the server did not answer on port $PORT within 15s:"
    cat app.log
    exit 1
  fi
  sleep 0.1
done
echo "$SHIPLOOP_RELEASE answers on port $PORT (pid $(cat app.pid))"
