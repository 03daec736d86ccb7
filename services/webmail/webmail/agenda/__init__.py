"""The calendar's storage and domain core (issue #7), without web pages.

- `model`: what callers pass in and get back (EventInput, Occurrence, StoredEvent…), time helpers;
- `store`: the `calendar_events` collection — create, update (series, one occurrence, this and
  following), move, delete, range queries with recurrence expansion, due reminders; owner-scoped;
- `recurrence`: rule validation and bounded expansion (recurring-ical-events);
- `ics`: import and export of a whole calendar (`.ics`), validated before anything is written;
- `itip`: invitations and answers by e-mail (iTIP/iMIP, RFC 5546/6047) and the rule for outside senders;
- `freebusy`: busy periods of colleagues when choosing a slot;
- `errors`: exceptions whose message is French, for the user.

See docs/agenda.md for the model, the rules and the limits.
"""
