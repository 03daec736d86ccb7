"""The webmail: the web application the academy's staff use to read and write mail.

An asyncio (aiohttp) application with server-rendered pages (Jinja2) styled with the French State design
system (DSFR) and light JavaScript (htmx). It authenticates against the directory over gRPC, reads and
updates the mailbox store, sends through the submission port and receives real-time events from notify.
"""
