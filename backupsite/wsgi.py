import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
application = get_wsgi_application()

# What start-up loaded (Django, the apps, their modules) lives as long as the worker, and
# none of it is garbage: frozen, the collector's full passes no longer walk it. Unfrozen,
# one such pass every dozen overview requests added some 50 ms to that request.
gc.collect()
gc.freeze()
