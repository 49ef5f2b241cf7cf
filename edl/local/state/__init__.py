"""The local cloud's state: the lake survives `stop`, `start`, a crash and a reboot.

moto keeps everything in memory; this package keeps it on disk, in the process that runs moto,
with moto's own Python objects (never its HTTP control API):

- `recorder.py`: a WSGI middleware in front of moto that journals each write (seeded, so a
  replay recreates the same ids and keys) and fsyncs it before the client gets its answer;
- `journal.py`: the journal's framing - length, CRC-32, payload - and how a torn tail is told
  from corruption;
- `snapshot.py`: every moto backend in one pickle, S3 bodies as blob files (`blobs.py`), KMS
  private keys as DER;
- `store.py`: the folder (`edl.paths.local_state_dir()`): lock, load = snapshot + journal
  replay, checkpoints, refusal of what cannot be read whole;
- `folder.py`: what `edl local start` decides before the runtime opens the folder (`--fresh`,
  a lake whose users are read back rather than bootstrapped again);
- `archive.py`: `edl local snapshot` / `restore` - a state folder as one tar file.

`--ephemeral` runs moto without any of it.
"""
