"""leakhunt: find memory leaks in running Linux processes with eBPF and write reports for tickets."""

__version__ = "0.1.0"
