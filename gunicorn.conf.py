"""Read by gunicorn from the working directory: the README's production command
(``gunicorn --workers 1 --threads 8 ... 'backend:create_app_from_env()'``, run from the
project's root) gets it without a flag; elsewhere pass ``--config PATH/gunicorn.conf.py``.

Its one job: gunicorn's own error replies (414 URI too long, 431 too many headers, 400
malformed requests) come back as the JSON ``{"error": ...}`` of every other error.
"""


def post_worker_init(worker):
    from server.gunicorn_errors import install

    install()
