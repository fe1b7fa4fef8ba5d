"""The one runtime: what runs inside every target (``mlprism run``, gates, registry, drift, serve).

Every target runs a step as ``mlprism run SPEC --only STEP [OVERRIDES]`` (see
:func:`mlprism.step_command`), so fingerprints, caching, metrics, gates and
registration behave the same locally, in Docker, on GitHub Actions and on
Kubernetes.

Project state lives beside the spec:

- ``mlprism.lock``            deterministic YAML, meant for git (data and step hashes)
- ``.mlprism/cache/``         content-addressed store (``objects/ab/cdef…``) and step records
- ``.mlprism/runs/<run-id>/`` one folder per run: ``<step>.log`` per step that printed something
- ``.mlprism/ledger.db``      SQLite (WAL): runs, step executions, params, metrics, artifacts, lineage
- ``.mlprism/registry.db``    SQLite: model versions, stages, audit of stage changes
- ``.mlprism/project.lock``   held by a running ``mlprism run`` (one writer at a time)
- ``.mlprism/statcache.json`` (device, inode) -> size, mtime, hash: unchanged files are not read again
- ``.mlprism/ir/``            compiled pipelines, so an unchanged spec is not composed again
- ``.mlprism/locks/``         a JSON copy of each lock file (parsing big YAML is slow)
- ``.mlprism/running/``       processes of running steps (a killed runner's are killed by the next run)
- ``.mlprism/sweeps/<id>/``   a workspace per combination but the first (which runs in the project) while a sweep runs

Modules: ``hashing`` (file/tree hashes with a stat cache), ``fingerprint`` (the
single definition of a step's cache key), ``cache``, ``lockfile``, ``ledger``,
``executor`` (the parallel DAG runner), ``gates``, ``registry``, ``drift``,
``serve``, ``sweep``, ``metrics``, ``display`` (what ``mlprism run`` prints),
``ircache``, ``container`` (runs steps in the pipeline image: ``mlprism run --in-docker``),
``paths`` (symlink escapes, write failures), ``redact`` (secret values masked in logs and output).
"""
