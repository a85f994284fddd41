"""The service (`afx run`): watches inbox/ and specs/, trains missing styles, renders every assigned pair.

It orchestrates and never re-implements a stage: the pipeline (`daemon.pipeline`) does the work.

    watch.py     which files exist and which have settled; watchdog events → a debounced rescan
    ledger.py    SQLite (WAL): tracks, styles, jobs (keys, states, attempts, leases), problems
    planner.py   specs → style versions; tracks × assigned styles → train and render jobs; cheap checks
                 and hashing of new tracks in a background thread
    executor.py  the Executor interface; LocalExecutor: each job in a child process, one slot per GPU (one on
                 CPU); error boundaries; wall-clock limits; `[executor] kind` picks the executor
    service.py   the loop: scan → plan → claim → execute → publish; signals; leases; scratch clean-up
    status.py    `afx status` / `afx retry`: the ledger, read while the service runs
    notify.py    systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING)

Import the submodules directly; this package imports nothing, so `afx status` stays light.
"""
