"""`vidqa serve`: an OpenAI-compatible HTTP server for questions about videos (optional extra `vidqa[serve]`).

`protocol` validates requests and shapes responses, `sources` resolves video references safely, `worker`
owns the model's thread and queue, `app` is the FastAPI surface; `vidqa.cli.serve` runs it under uvicorn.
"""
