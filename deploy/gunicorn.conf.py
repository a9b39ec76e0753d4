"""gunicorn settings of the web program (admin, dashboard, /healthz)."""
import os

bind = os.environ.get("PINEOPS_WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("PINEOPS_WEB_WORKERS", "2"))
threads = 2
timeout = 30
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Query strings are logged by the access log; nothing secret is ever passed in one.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
