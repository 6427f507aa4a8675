"""Run images as containers on runc, daemonless: OCI runtime spec, overlay rootfs, cgroups.

The floor above `puller/`: images come from the local graph store (`puller.store`); pyreg
does not re-implement namespaces or cgroups, it writes an OCI runtime spec (`spec.py`) and
hands it to runc (`runc.py`). See docs/build-and-run.md.
"""
