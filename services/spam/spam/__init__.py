"""Learned spam classification of the academy's mail.

The package turns raw RFC 5322 messages into language-independent features (`features`), scores them with a
linear model on hashed features (`model`), keeps immutable model versions in the database with one active
version (`registry`), learns from users' "Signaler comme indésirable" / "Ce n'est pas un indésirable"
reports within per-user bounds (`feedback`), and answers one question for the mail pipeline: is this message
spam for this recipient, and why (`classifier.SpamClassifier`). `python -m spam.train` builds a model from
the SpamAssassin public corpus (`corpus`); `python -m spam.admin` is the operators' command line.
"""
