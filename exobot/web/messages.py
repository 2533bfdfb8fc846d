"""The web's own messages (ca, es, en), added to the shared catalog of exobot.messages.

Statuses, history lines, durations and error messages are shared with chat; only what is
specific to pages lives here, under keys starting with `web.`.
"""

from __future__ import annotations

from exobot import messages

_CA: dict[str, str] = {
    "web.app_name": "Suport eXO",
    "web.ago": "fa {span}",
    "web.skip": "Vés al contingut",
    "web.nav.dashboard": "Tauler",
    "web.nav.tickets": "Tickets",
    "web.nav.new": "Obre un ticket",
    "web.nav.quarantine": "Quarantena",
    "web.nav.logout": "Surt",
    "web.nav.language": "Llengua",
    "web.nav.main": "Navegació principal",
    "web.logged_as": "Has entrat com a {user}",
    "web.login.title": "Entra",
    "web.login.intro": (
        "Entra amb la teva identitat de Matrix. La manera més fàcil: escriu !login a la "
        "sala de suport i t'enviarem un enllaç per missatge directe."
    ),
    "web.login.password_intro": "O bé entra amb el teu usuari i contrasenya de Matrix:",
    "web.login.user": "Usuari de Matrix",
    "web.login.password": "Contrasenya",
    "web.login.submit": "Entra",
    "web.login.bad_password": "L'usuari o la contrasenya no són correctes.",
    "web.login.not_operator": "{user} no forma part de l'equip de suport.",
    "web.login.limited": "Massa intents fallits. Torna-ho a provar d'aquí a {minutes} min.",
    "web.login.unavailable": (
        "Ara mateix no podem parlar amb el servidor de Matrix. Torna-ho a provar d'aquí a una "
        "estona."
    ),
    "web.login.no_password": "Aquest servidor no admet l'entrada amb contrasenya.",
    "web.link.title": "Enllaç d'entrada",
    "web.link.confirm": "Entraràs com a {user}.",
    "web.link.submit": "Entra",
    "web.link.invalid": (
        "Aquest enllaç no és vàlid: ja s'ha fet servir o ha caducat. Demana'n un altre "
        "escrivint !login a la sala de suport."
    ),
    "web.logout.done": "Has sortit.",
    "web.csrf": (
        "Aquest formulari ha caducat o no ve d'aquesta web. Torna a carregar la pàgina i "
        "prova-ho de nou."
    ),
    "web.forbidden": "Només l'equip de suport pot fer això.",
    "web.not_found": "Aquesta pàgina no existeix.",
    "web.error.title": "Error",
    "web.back": "Torna",
}

_ES: dict[str, str] = {
    "web.app_name": "Soporte eXO",
    "web.ago": "hace {span}",
    "web.skip": "Ir al contenido",
    "web.nav.dashboard": "Panel",
    "web.nav.tickets": "Tickets",
    "web.nav.new": "Abrir un ticket",
    "web.nav.quarantine": "Cuarentena",
    "web.nav.logout": "Salir",
    "web.nav.language": "Idioma",
    "web.nav.main": "Navegación principal",
    "web.logged_as": "Has entrado como {user}",
    "web.login.title": "Entrar",
    "web.login.intro": (
        "Entra con tu identidad de Matrix. Lo más fácil: escribe !login en la sala de soporte "
        "y te enviaremos un enlace por mensaje directo."
    ),
    "web.login.password_intro": "O bien entra con tu usuario y contraseña de Matrix:",
    "web.login.user": "Usuario de Matrix",
    "web.login.password": "Contraseña",
    "web.login.submit": "Entrar",
    "web.login.bad_password": "El usuario o la contraseña no son correctos.",
    "web.login.not_operator": "{user} no forma parte del equipo de soporte.",
    "web.login.limited": "Demasiados intentos fallidos. Vuelve a probar dentro de {minutes} min.",
    "web.login.unavailable": (
        "Ahora mismo no podemos hablar con el servidor de Matrix. Vuelve a probar en un rato."
    ),
    "web.login.no_password": "Este servidor no admite entrar con contraseña.",
    "web.link.title": "Enlace de entrada",
    "web.link.confirm": "Entrarás como {user}.",
    "web.link.submit": "Entrar",
    "web.link.invalid": (
        "Este enlace no es válido: ya se ha usado o ha caducado. Pide otro escribiendo !login "
        "en la sala de soporte."
    ),
    "web.logout.done": "Has salido.",
    "web.csrf": (
        "Este formulario ha caducado o no viene de esta web. Vuelve a cargar la página y "
        "prueba de nuevo."
    ),
    "web.forbidden": "Solo el equipo de soporte puede hacer esto.",
    "web.not_found": "Esta página no existe.",
    "web.error.title": "Error",
    "web.back": "Volver",
}

_EN: dict[str, str] = {
    "web.app_name": "eXO support",
    "web.ago": "{span} ago",
    "web.skip": "Skip to content",
    "web.nav.dashboard": "Dashboard",
    "web.nav.tickets": "Tickets",
    "web.nav.new": "Open a ticket",
    "web.nav.quarantine": "Quarantine",
    "web.nav.logout": "Log out",
    "web.nav.language": "Language",
    "web.nav.main": "Main navigation",
    "web.logged_as": "Logged in as {user}",
    "web.login.title": "Log in",
    "web.login.intro": (
        "Log in with your Matrix identity. The easiest way: type !login in the support room "
        "and we will send you a link by direct message."
    ),
    "web.login.password_intro": "Or log in with your Matrix user and password:",
    "web.login.user": "Matrix user",
    "web.login.password": "Password",
    "web.login.submit": "Log in",
    "web.login.bad_password": "The user or the password is not right.",
    "web.login.not_operator": "{user} is not in the support team.",
    "web.login.limited": "Too many failed attempts. Try again in {minutes} min.",
    "web.login.unavailable": "We cannot reach the Matrix server right now. Try again later.",
    "web.login.no_password": "This server does not accept password logins.",
    "web.link.title": "Login link",
    "web.link.confirm": "You will log in as {user}.",
    "web.link.submit": "Log in",
    "web.link.invalid": (
        "This link is not valid: it was already used or it expired. Ask for another one by "
        "typing !login in the support room."
    ),
    "web.logout.done": "You have logged out.",
    "web.csrf": (
        "This form expired or did not come from this site. Reload the page and try again."
    ),
    "web.forbidden": "Only the support team can do this.",
    "web.not_found": "This page does not exist.",
    "web.error.title": "Error",
    "web.back": "Back",
}

messages.register({"ca": _CA, "es": _ES, "en": _EN})
