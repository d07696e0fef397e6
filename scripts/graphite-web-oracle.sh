#!/bin/sh
# graphite-web-oracle.sh: runs Debian's graphite-web 1.1.8 on loopback as an
# oracle for shiploop's Graphite API (services/metrics TestGraphiteWebOracle).
#
#   scripts/graphite-web-oracle.sh [port]     (default 8181)
#
# then, in another shell:
#
#   cd services/metrics && GRAPHITE_WEB_URL=http://127.0.0.1:8181 \
#     GRAPHITE_WEB_WHISPER_DIR=/tmp/graphite-oracle/whisper \
#     go test -count=1 -run TestGraphiteWebOracle -v .
#
# The test writes its whisper files into GRAPHITE_WEB_WHISPER_DIR itself.
# Nothing of graphite-web is changed or copied: a settings module of our own
# (GRAPHITE_SETTINGS_MODULE) puts back inspect.getargspec/formatargspec,
# which Python 3.11 dropped and graphite-web's /functions still calls.
set -eu
PORT=${1:-8181}
DIR=${GRAPHITE_ORACLE_DIR:-/tmp/graphite-oracle}

if ! dpkg -s graphite-web python3-whisper >/dev/null 2>&1; then
	n=0
	until timeout 300 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends graphite-web python3-whisper; do
		n=$((n + 1))
		[ $n -ge 3 ] && { echo "apt-get failed 3 times" >&2; exit 1; }
		sleep $((n * 10))
	done
fi

mkdir -p "$DIR/whisper" "$DIR/log" "$DIR/py"
cat >"$DIR/py/oracle_settings.py" <<PY
import inspect
from collections import namedtuple

if not hasattr(inspect, 'getargspec'):
    _ArgSpec = namedtuple('ArgSpec', 'args varargs keywords defaults')

    def getargspec(func):
        s = inspect.getfullargspec(func)
        return _ArgSpec(s.args, s.varargs, s.varkw, s.defaults)
    inspect.getargspec = getargspec

if not hasattr(inspect, 'formatargspec'):
    def formatargspec(args, varargs=None, varkw=None, defaults=None):
        parts = []
        first_default = len(args) - len(defaults or ())
        for i, a in enumerate(args):
            if i >= first_default:
                parts.append('%s=%r' % (a, defaults[i - first_default]))
            else:
                parts.append(a)
        if varargs:
            parts.append('*' + varargs)
        if varkw:
            parts.append('**' + varkw)
        return '(' + ', '.join(parts) + ')'
    inspect.formatargspec = formatargspec

SECRET_KEY = 'graphite-web-oracle'
ALLOWED_HOSTS = ['*']
TIME_ZONE = 'UTC'
DEFAULT_XFILES_FACTOR = 0
LOG_ROTATION = False
GRAPHITE_ROOT = '/usr/share/graphite-web'
CONF_DIR = '$DIR'
STORAGE_DIR = '$DIR'
WHISPER_DIR = '$DIR/whisper/'
STANDARD_DIRS = ['$DIR/whisper/']
LOG_DIR = '$DIR/log'
INDEX_FILE = '$DIR/search_index'
STATIC_ROOT = '/usr/share/graphite-web/static'
DATABASES = {'default': {'NAME': '$DIR/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}
TAGDB = 'graphite.tags.localdatabase.LocalDatabaseTagDB'
FUNCTION_PLUGINS = []
PY

export PYTHONPATH="$DIR/py" GRAPHITE_SETTINGS_MODULE=oracle_settings DJANGO_SETTINGS_MODULE=graphite.settings
# /usr/bin/python3 is Debian's, which owns the graphite-web package.
timeout 300 /usr/bin/python3 -m django migrate --run-syncdb -v 0
echo "graphite-web on http://127.0.0.1:$PORT (whisper files in $DIR/whisper)" >&2
exec /usr/bin/python3 -m django runserver --noreload --nothreading "127.0.0.1:$PORT"
