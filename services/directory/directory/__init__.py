"""The directory service: who may use the platform.

Staff accounts (created by operators only, one by one or from HR exports), authentication with the NUMEN
on first login and a policy-checked password afterwards, recovery by reset links, suspension and soft
deletion, maintenance mode, an audit log, recipient resolution for the mail pipeline and the academic
address book — served over gRPC (`python -m directory`), administered with `python -m directory.admin`,
and called by the other services through `directory.client.DirectoryClient`. See docs/directory.md.
"""
