import os

from django.core.wsgi import get_wsgi_application

from pineops.env import load_env

load_env()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pineops.settings")
application = get_wsgi_application()
