"""The ``/api`` routes: jobs (create, read, follow, download, delete) and the models.

Each route is a thin caller: admission decides what a job may be, the pool
runs it, the store remembers it. Routes that touch the disk or the store are
plain ``def`` (FastAPI runs them in its thread pool); the upload and the event
stream are ``async``, as they pass a stream through. A job id is looked up
in the store (which checks its form) before any path is built from it, and a
stem name must be one the job wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from stemsep.config import PRESETS, load_preset
from stemsep.model.provider import has_checkpoint, local_candidates
from stemsep.serve.admission import DEFAULT_CODEC, DEFAULT_MODEL, PRESET_PREFIX, SERVED_CODECS, admit
from stemsep.serve.events import job_events
from stemsep.serve.jobs import DONE, FAILED, Job, JobStore, new_job_id
from stemsep.serve.settings import ServeSettings
from stemsep.serve.upload import FORM_OVERHEAD, receive_upload, too_large
from stemsep.serve.workers import STEMS, ZIP, WorkerPool

MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "opus": "audio/ogg; codecs=opus",
}
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class Service:
    """What the routes work with, made when the server starts."""

    settings: ServeSettings
    store: JobStore
    pool: WorkerPool


def _service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]


class JobOut(BaseModel):
    id: str
    state: str  # queued, running, done, failed
    progress: float  # 0..1
    error: str | None  # one sentence, for a failed job
    stems: list[str]  # the stems the job writes
    model: str
    codec: str
    filename: str  # the upload's original name (display only)
    duration: float  # seconds
    created: str  # ISO 8601


class ModelOut(BaseModel):
    name: str
    instruments: list[str]
    cached: bool  # its checkpoint is on this machine (else it is downloaded by its first job)


router = APIRouter()

_UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The song (any format FFmpeg reads)."},
                        "model": {"type": "string", "default": DEFAULT_MODEL, "enum": [PRESET_PREFIX + p for p in PRESETS]},
                        "stems": {"type": "string", "description": "Comma-separated instruments, e.g. vocals,drums."},
                        "codec": {"type": "string", "default": DEFAULT_CODEC, "enum": list(SERVED_CODECS)},
                    },
                }
            }
        },
    }
}


@router.post("/jobs", status_code=201, response_model=JobOut, openapi_extra=_UPLOAD_FORM)
async def create_job(request: Request, service: ServiceDep) -> JSONResponse:
    """Upload a song (streamed to disk, refused once past the size limit) and queue its separation."""
    settings = service.settings
    await run_in_threadpool(service.pool.check_room)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes + FORM_OVERHEAD:
        raise too_large(settings.max_upload_mb)
    job_id = new_job_id()
    folder = service.store.folder(job_id)
    folder.mkdir(parents=True)
    try:
        content_type = request.headers.get("content-type", "")
        upload = await receive_upload(request.stream(), content_type, folder, settings.max_upload_mb)
        job = await run_in_threadpool(admit, upload, job_id, settings)
        job = await run_in_threadpool(service.pool.submit, job)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return JSONResponse(job.public(), status_code=201, headers={"Location": f"/api/jobs/{job.id}"})


@router.get("/jobs/{job_id}", response_model=JobOut)
def read_job(job_id: str, service: ServiceDep) -> dict:
    """The job's state and progress."""
    return _job(service, job_id).public()


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse)
def follow_job(job_id: str, service: ServiceDep) -> StreamingResponse:
    """Server-sent events: ``progress`` with the job's JSON on each change, then ``done`` or ``failed``."""
    job = _job(service, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = job_events(service.store, job.id, service.settings.keepalive_s)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get("/jobs/{job_id}/stems/{name}", response_class=FileResponse)
def download_stem(job_id: str, name: str, service: ServiceDep) -> FileResponse:
    """One stem (Range requests are served: 206 with Content-Range)."""
    job = _finished(service, job_id)
    if name not in job.stems:
        raise HTTPException(404, f"This job has no stem {name[:40]!r}; it wrote {', '.join(job.stems)}.")
    path = _present(service.store.folder(job.id) / STEMS / f"{name}.{job.codec}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[job.codec],
        filename=download_name(job.filename, name, job.codec),
        content_disposition_type="attachment",
    )


@router.get("/jobs/{job_id}/zip", response_class=FileResponse)
def download_zip(job_id: str, service: ServiceDep) -> FileResponse:
    """Every stem in one zip, made on the first request and kept with the job."""
    job = _finished(service, job_id)
    folder = service.store.folder(job.id)
    if not (folder / ZIP).is_file():
        _write_zip(job, folder)
    return FileResponse(folder / ZIP, media_type="application/zip", filename=download_name(job.filename, "stems", "zip"))


@router.delete("/jobs/{job_id}", status_code=204, response_class=Response)
def delete_job(job_id: str, service: ServiceDep) -> Response:
    """Remove a job and its files; a running job is stopped first."""
    if not service.pool.delete(job_id):
        raise _no_job()
    return Response(status_code=204)


@router.get("/models", response_model=list[ModelOut])
def list_models(service: ServiceDep) -> list[dict]:
    """The presets a job may ask for, and whether each is on this machine already."""
    model_dir = service.settings.model_dir
    return [
        {
            "name": PRESET_PREFIX + name,
            "instruments": list(load_preset(name).instruments),
            "cached": any(has_checkpoint(folder) for folder in local_candidates(name, model_dir)),
        }
        for name in PRESETS
    ]


def download_name(filename: str, stem: str, extension: str) -> str:
    """``<song>_<stem>.<ext>``: the song's name reduced to letters, digits, '.', '-' and '_'."""
    song = _UNSAFE.sub("_", Path(filename).stem).strip("._")[:100] or "song"
    return f"{song}_{stem}.{extension}"


def _job(service: Service, job_id: str) -> Job:
    job = service.store.get(job_id)  # None for an id that is not 32 hex digits
    if job is None:
        raise _no_job()
    return job


def _finished(service: Service, job_id: str) -> Job:
    job = _job(service, job_id)
    if job.state == FAILED:
        raise HTTPException(409, "This job failed, so it has no stems.")
    if job.state != DONE:
        raise HTTPException(409, "This job is not done yet; its stems are ready once its state is done.")
    return job


def _present(path: Path) -> Path:
    if not path.is_file():
        raise HTTPException(404, "This stem's file is missing on the server.")
    return path


def _no_job() -> HTTPException:
    return HTTPException(404, "There is no job with this id.")


def _write_zip(job: Job, folder: Path) -> None:
    """``stems.zip`` of the job's stems, written beside it and renamed into place."""
    paths = {stem: _present(folder / STEMS / f"{stem}.{job.codec}") for stem in job.stems}
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{ZIP}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for stem, path in paths.items():  # audio barely deflates: stored, so the zip is ready at disk speed
                archive.write(path, download_name(job.filename, stem, job.codec))
        os.replace(temporary, folder / ZIP)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
