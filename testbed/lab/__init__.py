"""The lab: the topology realised on Docker (``realise``), driven through each node's
agent (``agent_client``), with pure route analysis (``routes``); ``Lab`` is the facade."""

from testbed.lab.lab import DEFAULT_LAB, Lab, LabStatus, NodeState, check_lab_name, find_labs

__all__ = ["DEFAULT_LAB", "Lab", "LabStatus", "NodeState", "check_lab_name", "find_labs"]
