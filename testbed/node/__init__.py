"""Code that runs inside the board and NFS containers (``python3 -m testbed.node ...``).

Only the standard library, pyroute2 and qemu.qmp may be imported here: the board image
installs nothing else.
"""
