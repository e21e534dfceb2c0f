"""The daemon: the engine served over HTTP (Starlette under uvicorn), a queue of sweeps."""
