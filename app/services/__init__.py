"""The rules the views call, one call per route, written without HTTP.

- `asks`: what a generate request asks for, checked before anything is stored, and answering it.
- `deletion`: deleting an entry or a day together with the images it owns.
- `search`: a search of the history and its hits.
- `exports`: the history streamed as chatlog.json, all fields, or Markdown.
- `importing`: an uploaded or CLI chatlog.json, checked and imported.
- `readiness`: whether this server can take requests (`/readyz`).

The generator (app.generation) is the service behind every answer; these sit around it.
"""
