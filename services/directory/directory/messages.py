"""Every French text the directory sends to a user or an operator, in one place."""

from __future__ import annotations

BAD_CREDENTIALS = "Identifiant ou mot de passe incorrect."
PASSWORD_CHANGE_REQUIRED = (
    "Première connexion : vous devez choisir un nouveau mot de passe avant d'accéder à votre messagerie."  # noqa: S105
)
ACCOUNT_SUSPENDED = "Votre compte est suspendu. Contactez l'assistance de votre DSDEN ou du rectorat."
ACCOUNT_DELETED = "Votre compte a été supprimé par le rectorat. Contactez l'assistance de votre DSDEN."
MAINTENANCE_DEFAULT = "Une mise à jour de la plateforme est en cours. Merci de réessayer plus tard."
THROTTLED = "Trop de tentatives infructueuses. Réessayez dans {seconds} secondes."
WELCOME = "Connexion réussie."
PASSWORD_CHANGED = "Votre mot de passe a été modifié."  # noqa: S105
SAME_PASSWORD = "Le nouveau mot de passe doit être différent de l'actuel."  # noqa: S105
RESET_REQUESTED = (
    "Si les informations saisies correspondent à un compte, un message contenant un lien de "
    "réinitialisation vient d'être envoyé à l'adresse de secours enregistrée. Le lien est valable "
    "{minutes} minutes et ne sert qu'une fois."
)
RESET_NEED_IDENTITY = "Indiquez votre identifiant, ou bien votre nom et votre prénom."
RESET_INVALID_LINK = (
    "Ce lien de réinitialisation n'est plus valable (déjà utilisé ou expiré). Faites une nouvelle demande."
)
RESET_DONE = "Votre mot de passe a été réinitialisé. Vous pouvez vous connecter."
UNKNOWN_ESTABLISHMENT = "Établissement inconnu : {uai}."
UNKNOWN_FUNCTION = "Fonction inconnue : {function}."
ACCOUNT_NOT_FOUND = "Aucun compte ne correspond à « {identifier} »."
ALREADY_EXISTS = "Cette personne a déjà un compte : {address}."
DUPLICATE_IN_FILE = "Doublon : même personne (même NUMEN) qu'à la ligne {line}."
ALIAS_TAKEN = "L'adresse {alias} est déjà attribuée."
ALIAS_DOMAIN = "Un alias doit appartenir au domaine {domain}."
ADMIN_DENIED = "Opération réservée aux opérateurs."
SUSPENDED_OK = "Compte {address} suspendu."
UNSUSPENDED_OK = "Compte {address} réactivé."
DELETED_OK = "Compte {address} supprimé ; restauration possible jusqu'au {until}."
RESTORED_OK = "Compte {address} restauré."
RESET_FIRST_LOGIN_OK = (
    "Compte {address} remis en première connexion : le NUMEN redevient le mot de passe temporaire."
)
NOT_DELETED = "Le compte {address} n'est pas supprimé."
NOT_SUSPENDED = "Le compte {address} n'est pas suspendu."
ALREADY_DELETED = "Le compte {address} est déjà supprimé."
NO_ACCOUNT = "Aucun compte ne correspond à ces informations."
