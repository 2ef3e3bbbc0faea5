"""A local Cloud Storage emulator for the gs:// workdir test: gcp-storage-emulator, plus the two
behaviours of the real service that tensorstore's OCDBT checkpoints rely on and it lacks —
every download names the object's generation (`x-goog-generation`), and an upload conditional
on `ifGenerationMatch` fails with 412 when the object's generation differs (0 = must not exist).

    python tests/support/gcs_emulator.py PORT BUCKET
"""

from __future__ import annotations

import sys
import time
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects  # patched before the server builds its routes
from gcp_storage_emulator.exceptions import NotFound

_download, _insert = objects.download, objects.insert


def _generation(storage, bucket: str, name: str) -> str:
    try:
        return str(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return "0"


def download(request, response, storage, *args, **kwargs):
    _download(request, response, storage, *args, **kwargs)
    if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        response["x-goog-generation"] = _generation(storage, request.params["bucket_name"],
                                                    request.params["object_id"])


def insert(request, response, storage, *args, **kwargs):
    wanted = request.query.get("ifGenerationMatch")
    name = (request.query.get("name") or [None])[0]
    if wanted and name and _generation(storage, request.params["bucket_name"], name) != wanted[0]:
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json({"error": {"code": 412, "message": "Precondition Failed"}})
        return
    _insert(request, response, storage, *args, **kwargs)


objects.download, objects.insert = download, insert

from gcp_storage_emulator.server import create_server  # noqa: E402  (after the patch)

if __name__ == "__main__":
    port, bucket = int(sys.argv[1]), sys.argv[2]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    while True:
        time.sleep(3600)
