from testbed.launcher import entry

entry()
