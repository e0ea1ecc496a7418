"""Label Studio's ML-backend protocol, served under ``/label-studio`` of this server.

Label Studio connects to ``http://<this server>/label-studio`` as a project's model and
calls ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook`` (its training
button and annotation events), ``POST /train`` and ``POST /job_status`` under that URL. The
routes share this server's services (audio store, segmentation, finetuning queue), so a
prediction is exactly what ``/get-labels`` answers and training is one job of the queue.

One module per job: ``settings`` (the Label Studio URL and token this server is started
with), ``label_config`` (the labelling config: which tags, which labels, the label rule),
``task_audio`` (a task's audio URL to stored audio), ``ls_api`` (Label Studio's API through
``label-studio-sdk``), ``projects`` (which model each project uses), ``predictions``,
``training``, ``schemas`` (request and reply shapes) and ``routes`` (declared on the
server's ``JsonApi``: ``declare_routes(api)`` at import, ``install(app)`` per app).
"""

from label_studio_backend.routes import PREFIX, declare_routes, install

__all__ = ["PREFIX", "declare_routes", "install"]
