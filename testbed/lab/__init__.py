"""The lab: the topology realised on Docker (``realise``), driven through each node's
agent (``agent_client``), with pure route analysis (``routes``); ``lab.Lab`` is the facade."""
