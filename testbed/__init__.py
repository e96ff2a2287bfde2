"""gauss-testbed: ARM KVM/QEMU dirty-page logging validation in Docker containers."""

__version__ = "0.1.0"
