from pineops.process import headless_process, keep_out_unused

keep_out_unused()
# The Celery app, for the processes that queue or run tasks (web, Celery worker and beat); the headless
# ones never do (pineops.process).
if not headless_process():
    from pineops.celery import app as celery_app

    __all__ = ("celery_app",)
