"""The message catalog: what exobot says to volunteers (Matrix, web), in ca, es and en."""

from __future__ import annotations

import logging
import string

log = logging.getLogger("exobot.messages")

DEFAULT_LANGUAGE = "ca"
FALLBACK_LANGUAGE = "en"

# A missing key or parameter raises when STRICT (the test suite sets it: there it is a bug to
# report loudly); at runtime the text falls back to English, then to the key, and is logged.
STRICT = False

_CA: dict[str, str] = {
    # Statuses.
    "status.new": "nou",
    "status.open": "obert",
    "status.stalled": "aturat",
    "status.resolved": "resolt",
    "status.rejected": "rebutjat",
    # Common words.
    "nobody": "ningú",
    "unknown": "(desconegut)",
    "no_subject": "(sense assumpte)",
    "requestor": "Sol·licitant: {requestor}",
    "queue": "Cua: {queue}",
    "status": "Estat: {status}",
    "owner": "Responsable: {owner}",
    "attachments.one": "📎 1 fitxer adjunt: {names}",
    "attachments.other": "📎 {count} fitxers adjunts: {names}",
    # Durations.
    "duration.now": "menys d'1 min",
    "duration.minutes": "{n} min",
    "duration.hours": "{n} h",
    "duration.days.one": "{n} dia",
    "duration.days.other": "{n} dies",
    # Root message of a ticket's thread.
    "root.comment": "💬 {actor} ha afegit un comentari intern:",
    # Announcements (one post per change) and history lines.
    "entry.created": "Ticket creat a la cua {queue} per a {requestor}",
    "entry.take": "{actor} ha agafat {ticket}",
    "entry.give": "{actor} ha assignat {ticket} a {owner}",
    "entry.untake": "{actor} ha deixat {ticket} sense responsable",
    "entry.status": "{actor} ha canviat l'estat de {ticket}: {from} → {to}",
    "entry.status_suffix": "{from} → {to}",
    "entry.title": "{actor} ha canviat el títol de {ticket}: «{from}» → «{to}»",
    "entry.queue": "{actor} ha mogut {ticket} de la cua {from} a la cua {to}",
    "entry.comment": "💬 {actor} ha afegit un comentari intern:",
    "entry.comment_saved": "Comentari intern desat",
    "entry.reply": "✉️ {actor} ha respost a {to}:",
    "entry.reply_sent": "Resposta enviada a {to}",
    "entry.ack": "Acusament de recepció enviat a {to}",
    "entry.resolved_notice": "Avís de resolució enviat a {to}",
    "entry.resolved_notice_suffix": "avís de resolució enviat a {to}",
    "entry.mail_out": "Correu enviat a {to}",
    "entry.mail_in": "📨 {sender} ha escrit:",
    "entry.automatic_in": "🤖 Resposta automàtica enviada per {sender} (no canvia l'estat):",
    "entry.unverified_in": (
        "⚠️ Correu d'un remitent no verificat ({sender}): no té cap efecte fins que "
        "un operador l'accepti amb !accepta {ticket}"
    ),
    "entry.bounce": "⚠️ Un correu nostre ha rebotat: {recipients}{details}",
    "entry.accepted": "{actor} ha acceptat com a correspondència el correu de l'adreça {sender}",
    "entry.accepted_cc": (
        "{actor} ha acceptat com a correspondència el correu de l'adreça {sender}. "
        "No s'han afegit com a participants les adreces en còpia: {addresses} "
        "(per afegir-ne una: !cc {ticket} +adreça)"
    ),
    "entry.body_truncated": "(Missatge retallat: el correu sencer es conserva com a original.)",
    "entry.cc_not_added": (
        "Adreces en còpia no afegides com a participants: {addresses} "
        "(per afegir-ne una: !cc {ticket} +adreça)"
    ),
    "entry.participants_added": "{actor} ha afegit {added} als participants de {ticket}",
    "entry.participants_removed": "{actor} ha tret {removed} dels participants de {ticket}",
    "entry.participants_both": (
        "{actor} ha afegit {added} als participants de {ticket} i n'ha tret {removed}"
    ),
    "entry.cc_skipped": (
        "⚠️ {recipient} no ha rebut còpia de la resposta: no és una adreça a la qual es pugui "
        "escriure ({error}). Per treure-la: !cc {ticket} -{recipient}"
    ),
    "entry.delivery_failed": "⚠️ No s'ha pogut enviar el correu a {recipient}: {error}",
    "entry.alert_new": "⚠️ Alerta: ticket nou que ningú no ha agafat",
    "entry.alert_stalled": "⏰ Recordatori: ticket aturat",
    "entry.other": "{actor}: {kind}",
    "opened": "🆕 S'ha obert {ticket} «{title}»; el seu fil és a la sala de {queue}.",
    # Queue move, alerts, reminders.
    "moved": (
        "➡️ {ticket} s'ha mogut de la cua {old} a la cua {new}. El fil continua a la sala de {new}."
    ),
    "alert": (
        "⚠️ Fa {duration} que {ticket} és nou i ningú no l'ha agafat. "
        "Qui se n'encarrega? !agafa {ticket}"
    ),
    "alert_line": "⚠️ {ticket} «{title}» espera des de fa {duration} ({status}) — !agafa {ticket}",
    "stalled_reminder": (
        "⏰ Fa {duration} que {ticket} està aturat. Cal reprendre'l o tancar-lo? "
        "!obre {ticket} · !resol {ticket}"
    ),
    "stalled_line": "⏰ {ticket} «{title}» aturat des de fa {duration} · responsable: {owner}",
    # Daily digest.
    "digest.title": "📊 Resum diari del suport — {date}",
    "digest.no_new": "Cap ticket nou esperant 🎉",
    "digest.new_waiting.one": "⚠️ 1 ticket nou esperant",
    "digest.new_waiting.other": "⚠️ {count} tickets nous esperant",
    "digest.no_tickets": "Cap ticket actiu",
    "digest.oldest_new": "Els nous que fa més que esperen:",
    "digest.oldest_stalled": "Els aturats més antics:",
    "digest.item": "{ticket} «{title}» — {duration}",
    # Quarantine.
    "quarantine.head": (
        "⚠️ Un correu rebut no s'ha pogut processar i s'ha apartat (quarantena núm. {id})."
    ),
    "quarantine.details": "De: {sender} · Assumpte: {subject}",
    # Subject of the notice to a member whose mail was too big to fetch.
    "mail.too_big.subject": "Missatge massa gran: {subject}",
    "quarantine.error": "Error: {error}",
    "quarantine.commands": (
        "Per veure'l: {show} · per tornar-ho a provar: {retry} · per descartar-lo: {discard}"
    ),
    # !show
    "show.created": "Creat el {when} (fa {age})",
    "show.last_mail": "Últim correu del sol·licitant: fa {age}",
    "show.last_mail_never": "Últim correu del sol·licitant: cap",
    # !history
    "history.title": "Historial de {ticket} «{title}»",
    "history.omitted.one": "(s'omet 1 entrada més antiga)",
    "history.omitted.other": "(s'ometen les {count} entrades més antigues)",
    "history.empty": "L'historial és buit",
    # !list and !search
    "list.title.one": "1 ticket:",
    "list.title.other": "{count} tickets:",
    "list.item": "{ticket} · {status} · {queue} · {owner} · {age} · {title}",
    "list.more": "… i {count} més",
    "list.empty": "Cap ticket",
    "search.title": "Resultats per a «{words}»: {count}",
    "search.empty": "Cap ticket coincideix amb «{words}»",
    # !help
    "help.title": "Ordres de l'exobot (dins del fil d'un ticket, la referència es pot ometre):",
    "help.footer": (
        "Referències: {prefix}#310, {prefix} 310, ticket de {prefix} 310, #310 o 310. "
        "Detalls d'una ordre: !ajuda agafa"
    ),
    "help.also": "També: {aliases}",
    "help.unknown": "No conec l'ordre «{topic}». Escriu !ajuda per veure-les totes.",
    "help.usage.take": "!agafa {ref}",
    "help.usage.give": "!dona {ref} @usuari:servidor",
    "help.usage.untake": "!deixa {ref}",
    "help.usage.reply": "!respon {ref} text…",
    "help.usage.comment": "!comenta {ref} text…",
    "help.usage.title": "!titol {ref} títol nou",
    "help.usage.move": "!mou {ref} cua",
    "help.usage.status": "!estat {ref} estat",
    "help.usage.open": "!obre {ref}",
    "help.usage.stall": "!atura {ref}",
    "help.usage.resolve": "!resol {ref}",
    "help.usage.reject": "!rebutja {ref}",
    "help.usage.show": "!mostra {ref}",
    "help.usage.history": "!historial {ref}",
    "help.usage.list": "!llista [cua] [estat…] [meus|lliures|tots]",
    "help.usage.search": "!cerca paraules…",
    "help.usage.new": "!nou adreça@exemple.org títol…",
    "help.usage.accept": "!accepta {ref}",
    "help.usage.cc": "!cc {ref} +adreça -adreça…",
    "help.usage.login": "!entra",
    "help.usage.help": "!ajuda [ordre]",
    "help.desc.take": "T'assigna el ticket (nou → obert).",
    "help.desc.give": "Assigna el ticket a algú altre (nou → obert).",
    "help.desc.untake": "Deixa el ticket sense responsable.",
    "help.desc.reply": (
        "Envia un correu al sol·licitant; el text pot tenir diverses línies (nou → obert)."
    ),
    "help.desc.comment": (
        "Desa un comentari intern, que mai no s'envia per correu. "
        "Els missatges normals dins del fil d'un ticket també es desen com a comentaris."
    ),
    "help.desc.title": "Canvia el títol: que sigui curt i concret, per distingir els tickets.",
    "help.desc.move": "Mou el ticket a una altra cua (per exemple, tresoreria).",
    "help.desc.status": (
        "Canvia l'estat: obert, aturat, resolt o rebutjat. "
        "Resolt envia l'avís al sol·licitant; rebutjat no envia res."
    ),
    "help.desc.open": "Posa el ticket en estat obert.",
    "help.desc.stall": "Atura el ticket per reprendre'l més endavant.",
    "help.desc.resolve": "Marca el ticket com a resolt i envia l'avís al sol·licitant.",
    "help.desc.reject": "Rebutja el ticket sense enviar cap correu.",
    "help.desc.show": "Mostra el resum del ticket.",
    "help.desc.history": "Mostra l'historial del ticket.",
    "help.desc.list": "Llista tickets; per defecte, els nous i els oberts.",
    "help.desc.search": "Cerca tickets pel text.",
    "help.desc.new": (
        "Obre un ticket en nom d'algú (per exemple, després d'una trucada); "
        "el text pot anar a les línies següents."
    ),
    "help.desc.accept": (
        "Accepta com a correspondència l'últim correu d'un remitent no verificat "
        "i el fa participant del ticket; les adreces en còpia d'aquell correu només es llisten."
    ),
    "help.desc.cc": (
        "Afegeix (+) o treu (-) participants: les adreces que reben còpia de les respostes "
        "i que poden escriure al ticket. El sol·licitant no es pot treure."
    ),
    "help.desc.login": "T'envia per missatge directe un enllaç d'un sol ús per entrar a la web de suport.",
    "help.desc.help": "Mostra aquesta ajuda o l'ús d'una ordre.",
    # Errors.
    "arg.text": "el text",
    "arg.title": "el títol",
    "arg.user": "l'usuari (@nom:servidor)",
    "arg.queue": "la cua",
    "arg.status": "l'estat",
    "arg.words": "les paraules que cal cercar",
    "arg.address": "l'adreça de correu",
    "arg.participants": "les adreces (+adreça per afegir, -adreça per treure)",
    "arg.other": "un argument ({argument})",
    "error.usage": "Ús: {usage}",
    "error.unknown_command": "No conec l'ordre !{command}. Escriu !ajuda per veure les ordres.",
    "error.missing_reference": (
        "A !{command} li falta la referència del ticket (per exemple, {prefix}#3); "
        "dins del fil d'un ticket es pot ometre."
    ),
    "error.bad_reference": (
        "«{text}» no és una referència de ticket vàlida. "
        "Escriu-la com {prefix}#310, {prefix} 310 o #310."
    ),
    "error.missing_argument": "A !{command} li falta {argument}.",
    "error.bad_status": "No conec l'estat «{word}». Estats possibles: {known}.",
    "error.bad_user": "«{text}» no és un usuari de Matrix: escriu-lo com @nom:servidor.",
    "error.bad_queue": "No hi ha cap cua «{queue}». Cues: {known}.",
    "error.bad_address": "«{text}» no és una adreça de correu utilitzable ({reason}).",
    "address.needs_smtputf8": "té caràcters no ASCII abans de l'@, i no enviem correu internacionalitzat (SMTPUTF8)",
    "address.reserved_domain": "el domini és un nom reservat que no rep correu",
    "address.quoted": "no acceptem la part d'abans de l'@ entre cometes",
    "address.no_at": "li falta l'@",
    "address.too_long": "és massa llarga",
    "address.bad_domain": "la part de després de l'@ no és un domini vàlid",
    "address.bad_dots": "té punts mal posats (dos seguits, o al principi o al final)",
    "address.bad_local": "la part d'abans de l'@ té caràcters no permesos o és buida",
    "address.invalid": "no té la forma nom@domini",
    "error.bad_cc_argument": (
        "«{text}»: escriu +adreça per afegir un participant o -adreça per treure'l."
    ),
    "error.missing_participants": "Falten les adreces que cal afegir o treure.",
    "error.too_many_participants": "Com a màxim {limit} adreces alhora.",
    "error.own_address_participant": (
        "{address} és l'adreça del mateix suport: no pot ser participant."
    ),
    "error.requestor_stays": (
        "{address} és el sol·licitant de {ticket}: no es pot treure dels participants."
    ),
    "error.add_and_remove": "{address} no es pot afegir i treure alhora.",
    "error.participants_unchanged": "Els participants de {ticket} ja són aquests: res a canviar.",
    "error.unexpected_argument": "!{command} no necessita res més, i sobra «{text}».",
    "error.bad_list_argument": (
        "«{word}» no és un filtre de !llista: hi pots posar una cua, estats, meus, lliures o tots."
    ),
    "error.not_found": "No existeix el ticket {ticket}.",
    "error.not_operator": "Només els operadors de l'equip de suport poden fer això.",
    "error.already_unowned": "{ticket} ja no té responsable.",
    "error.already_owner": "{owner} ja és responsable de {ticket}.",
    "error.missing_text": "Falta el text: escriu-lo després de la referència del ticket.",
    "error.missing_title": "Falta el títol nou.",
    "error.same_title": "{ticket} ja té aquest títol.",
    "error.unknown_queue": "No hi ha cap cua «{queue}». Cues: {known}.",
    "error.same_queue": "{ticket} ja és a la cua {queue}.",
    "error.back_to_new": (
        "{ticket} no pot tornar a l'estat nou. Si vols deixar-lo sense responsable: !deixa {ticket}"
    ),
    "error.same_status": "{ticket} ja té l'estat {status}.",
    "error.no_unverified": "{ticket} no té cap correu de remitent no verificat per acceptar.",
    "error.bad_search": (
        "La cerca conté caràcters de control (com ara un caràcter nul) que no es poden "
        "cercar: treu-los i torna-ho a provar."
    ),
    "error.bad_page": "Aquesta pàgina no existeix: el número de pàgina és massa gran (màxim {max}).",
    "error.internal": (
        "Alguna cosa ha fallat per part nostra i ho hem registrat. Torna-ho a provar "
        "d'aquí a una estona i, si continua fallant, avisa els administradors."
    ),
    "error.generic": "No s'ha pogut fer ({code}).",
    # Refusals.
    "not_operator": (
        "Ho sento, només els operadors de l'equip de suport poden fer servir les ordres "
        "de l'exobot."
    ),
    "direct_refusal": (
        "Hola! Només treballo a les sales de l'equip de suport de l'eXO. "
        "Si necessites ajuda, escriu a {address}."
    ),
    "chat.open_room": (
        "⚠️ Aquesta sala és oberta (regla d'entrada «{rule}»): qualsevol hi pot entrar, així "
        "que ser-ne membre no dona drets d'operador a ningú. Feu-la només per invitació (o "
        "amb petició d'entrada), o definiu la llista d'operadors a matrix.operators."
    ),
    "chat.login.link": (
        "Aquí tens el teu enllaç per entrar a la web de suport (un sol ús, caduca d'aquí a "
        "{minutes} min): {url}"
    ),
    "chat.login.sent": "T'he enviat un enllaç d'entrada per missatge directe.",
    "chat.login.no_web": "La web de suport no està activada en aquest servidor.",
}

_ES: dict[str, str] = {
    "status.new": "nuevo",
    "status.open": "abierto",
    "status.stalled": "parado",
    "status.resolved": "resuelto",
    "status.rejected": "rechazado",
    "nobody": "nadie",
    "unknown": "(desconocido)",
    "no_subject": "(sin asunto)",
    "requestor": "Solicitante: {requestor}",
    "queue": "Cola: {queue}",
    "status": "Estado: {status}",
    "owner": "Responsable: {owner}",
    "attachments.one": "📎 1 archivo adjunto: {names}",
    "attachments.other": "📎 {count} archivos adjuntos: {names}",
    "duration.now": "menos de 1 min",
    "duration.minutes": "{n} min",
    "duration.hours": "{n} h",
    "duration.days.one": "{n} día",
    "duration.days.other": "{n} días",
    "root.comment": "💬 {actor} ha añadido un comentario interno:",
    "entry.created": "Ticket creado en la cola {queue} para {requestor}",
    "entry.take": "{actor} ha tomado {ticket}",
    "entry.give": "{actor} ha asignado {ticket} a {owner}",
    "entry.untake": "{actor} ha dejado {ticket} sin responsable",
    "entry.status": "{actor} ha cambiado el estado de {ticket}: {from} → {to}",
    "entry.status_suffix": "{from} → {to}",
    "entry.title": "{actor} ha cambiado el título de {ticket}: «{from}» → «{to}»",
    "entry.queue": "{actor} ha movido {ticket} de la cola {from} a la cola {to}",
    "entry.comment": "💬 {actor} ha añadido un comentario interno:",
    "entry.comment_saved": "Comentario interno guardado",
    "entry.reply": "✉️ {actor} ha respondido a {to}:",
    "entry.reply_sent": "Respuesta enviada a {to}",
    "entry.ack": "Acuse de recibo enviado a {to}",
    "entry.resolved_notice": "Aviso de resolución enviado a {to}",
    "entry.resolved_notice_suffix": "aviso de resolución enviado a {to}",
    "entry.mail_out": "Correo enviado a {to}",
    "entry.mail_in": "📨 {sender} ha escrito:",
    "entry.automatic_in": "🤖 Respuesta automática de {sender} (no cambia el estado):",
    "entry.unverified_in": (
        "⚠️ Correo de un remitente no verificado ({sender}): no tiene ningún efecto hasta "
        "que un operador lo acepte con !accept {ticket}"
    ),
    "entry.bounce": "⚠️ Un correo nuestro ha rebotado: {recipients}{details}",
    "entry.accepted": "{actor} ha aceptado el correo de {sender} como correspondencia",
    "entry.accepted_cc": (
        "{actor} ha aceptado el correo de {sender} como correspondencia. "
        "No se han añadido como participantes las direcciones en copia: {addresses} "
        "(para añadir una: !cc {ticket} +dirección)"
    ),
    "entry.body_truncated": "(Mensaje recortado: el correo entero se conserva como original.)",
    "entry.cc_not_added": (
        "Direcciones en copia no añadidas como participantes: {addresses} "
        "(para añadir una: !cc {ticket} +dirección)"
    ),
    "entry.participants_added": "{actor} ha añadido {added} a los participantes de {ticket}",
    "entry.participants_removed": "{actor} ha quitado {removed} de los participantes de {ticket}",
    "entry.participants_both": (
        "{actor} ha añadido {added} a los participantes de {ticket} y ha quitado {removed}"
    ),
    "entry.cc_skipped": (
        "⚠️ {recipient} no ha recibido copia de la respuesta: no es una dirección a la que se "
        "pueda escribir ({error}). Para quitarla: !cc {ticket} -{recipient}"
    ),
    "entry.delivery_failed": "⚠️ No se ha podido enviar el correo a {recipient}: {error}",
    "entry.alert_new": "⚠️ Alerta: ticket nuevo que nadie ha tomado",
    "entry.alert_stalled": "⏰ Recordatorio: ticket parado",
    "entry.other": "{actor}: {kind}",
    "opened": "🆕 Se ha abierto {ticket} «{title}»; su hilo está en la sala de {queue}.",
    "moved": (
        "➡️ {ticket} se ha movido de la cola {old} a la cola {new}. "
        "El hilo continúa en la sala de {new}."
    ),
    "alert": (
        "⚠️ Hace {duration} que {ticket} es nuevo y nadie lo ha tomado. "
        "¿Quién se encarga? !take {ticket}"
    ),
    "alert_line": ("⚠️ {ticket} «{title}» espera desde hace {duration} ({status}) — !take {ticket}"),
    "stalled_reminder": (
        "⏰ Hace {duration} que {ticket} está parado. ¿Hay que retomarlo o cerrarlo? "
        "!open {ticket} · !resolve {ticket}"
    ),
    "stalled_line": "⏰ {ticket} «{title}» parado desde hace {duration} · responsable: {owner}",
    "digest.title": "📊 Resumen diario del soporte — {date}",
    "digest.no_new": "Ningún ticket nuevo esperando 🎉",
    "digest.new_waiting.one": "⚠️ 1 ticket nuevo esperando",
    "digest.new_waiting.other": "⚠️ {count} tickets nuevos esperando",
    "digest.no_tickets": "Ningún ticket activo",
    "digest.oldest_new": "Los nuevos que llevan más tiempo esperando:",
    "digest.oldest_stalled": "Los parados más antiguos:",
    "digest.item": "{ticket} «{title}» — {duration}",
    "quarantine.head": (
        "⚠️ Un correo recibido no se ha podido procesar y se ha apartado (cuarentena n.º {id})."
    ),
    "quarantine.details": "De: {sender} · Asunto: {subject}",
    "mail.too_big.subject": "Mensaje demasiado grande: {subject}",
    "quarantine.error": "Error: {error}",
    "quarantine.commands": (
        "Para verlo: {show} · para reintentarlo: {retry} · para descartarlo: {discard}"
    ),
    "show.created": "Creado el {when} (hace {age})",
    "show.last_mail": "Último correo del solicitante: hace {age}",
    "show.last_mail_never": "Último correo del solicitante: ninguno",
    "history.title": "Historial de {ticket} «{title}»",
    "history.omitted.one": "(se omite 1 entrada más antigua)",
    "history.omitted.other": "(se omiten las {count} entradas más antiguas)",
    "history.empty": "El historial está vacío",
    "list.title.one": "1 ticket:",
    "list.title.other": "{count} tickets:",
    "list.item": "{ticket} · {status} · {queue} · {owner} · {age} · {title}",
    "list.more": "… y {count} más",
    "list.empty": "Ningún ticket",
    "search.title": "Resultados para «{words}»: {count}",
    "search.empty": "Ningún ticket coincide con «{words}»",
    "help.title": (
        "Órdenes del exobot (dentro del hilo de un ticket se puede omitir la referencia):"
    ),
    "help.footer": (
        "Referencias: {prefix}#310, {prefix} 310, ticket de {prefix} 310, #310 o 310. "
        "Detalles de una orden: !help take"
    ),
    "help.also": "También: {aliases}",
    "help.unknown": "No conozco la orden «{topic}». Escribe !help para verlas todas.",
    "help.usage.take": "!take {ref}",
    "help.usage.give": "!give {ref} @usuario:servidor",
    "help.usage.untake": "!untake {ref}",
    "help.usage.reply": "!reply {ref} texto…",
    "help.usage.comment": "!comment {ref} texto…",
    "help.usage.title": "!title {ref} título nuevo",
    "help.usage.move": "!move {ref} cola",
    "help.usage.status": "!status {ref} estado",
    "help.usage.open": "!open {ref}",
    "help.usage.stall": "!stall {ref}",
    "help.usage.resolve": "!resolve {ref}",
    "help.usage.reject": "!reject {ref}",
    "help.usage.show": "!show {ref}",
    "help.usage.history": "!history {ref}",
    "help.usage.list": "!list [cola] [estado…] [mine|unowned|all]",
    "help.usage.search": "!search palabras…",
    "help.usage.new": "!new direccion@ejemplo.org título…",
    "help.usage.accept": "!accept {ref}",
    "help.usage.cc": "!cc {ref} +dirección -dirección…",
    "help.usage.login": "!login",
    "help.usage.help": "!help [orden]",
    "help.desc.take": "Te asigna el ticket (nuevo → abierto).",
    "help.desc.give": "Asigna el ticket a otra persona (nuevo → abierto).",
    "help.desc.untake": "Deja el ticket sin responsable.",
    "help.desc.reply": (
        "Envía un correo al solicitante; el texto puede tener varias líneas (nuevo → abierto)."
    ),
    "help.desc.comment": (
        "Guarda un comentario interno, que nunca se envía por correo. "
        "Los mensajes normales en el hilo de un ticket también se guardan como comentarios."
    ),
    "help.desc.title": "Cambia el título: corto y concreto, para distinguir los tickets.",
    "help.desc.move": "Mueve el ticket a otra cola (por ejemplo, tresoreria).",
    "help.desc.status": (
        "Cambia el estado: open, stalled, resolved o rejected (o en catalán). "
        "Resuelto envía el aviso al solicitante; rechazado no envía nada."
    ),
    "help.desc.open": "Pone el ticket en estado abierto.",
    "help.desc.stall": "Para el ticket para retomarlo más adelante.",
    "help.desc.resolve": "Marca el ticket como resuelto y envía el aviso al solicitante.",
    "help.desc.reject": "Rechaza el ticket sin enviar ningún correo.",
    "help.desc.show": "Muestra el resumen del ticket.",
    "help.desc.history": "Muestra el historial del ticket.",
    "help.desc.list": "Lista tickets; por defecto, los nuevos y los abiertos.",
    "help.desc.search": "Busca tickets por el texto.",
    "help.desc.new": (
        "Abre un ticket en nombre de alguien (por ejemplo, tras una llamada); "
        "el texto puede ir en las líneas siguientes."
    ),
    "help.desc.accept": (
        "Acepta como correspondencia el último correo de un remitente no verificado "
        "y lo hace participante del ticket; las direcciones en copia de ese correo solo se "
        "listan."
    ),
    "help.desc.cc": (
        "Añade (+) o quita (-) participantes: las direcciones que reciben copia de las "
        "respuestas y que pueden escribir al ticket. El solicitante no se puede quitar."
    ),
    "help.desc.login": "Te envía por mensaje directo un enlace de un solo uso para entrar en la web de soporte.",
    "help.desc.help": "Muestra esta ayuda o el uso de una orden.",
    "arg.text": "el texto",
    "arg.title": "el título",
    "arg.user": "el usuario (@nombre:servidor)",
    "arg.queue": "la cola",
    "arg.status": "el estado",
    "arg.words": "las palabras que buscar",
    "arg.address": "la dirección de correo",
    "arg.participants": "las direcciones (+dirección para añadir, -dirección para quitar)",
    "arg.other": "un argumento ({argument})",
    "error.usage": "Uso: {usage}",
    "error.unknown_command": "No conozco la orden !{command}. Escribe !help para ver las órdenes.",
    "error.missing_reference": (
        "A !{command} le falta la referencia del ticket (por ejemplo, {prefix}#3); "
        "dentro del hilo de un ticket se puede omitir."
    ),
    "error.bad_reference": (
        "«{text}» no es una referencia de ticket válida. "
        "Escríbela como {prefix}#310, {prefix} 310 o #310."
    ),
    "error.missing_argument": "A !{command} le falta {argument}.",
    "error.bad_status": "No conozco el estado «{word}». Estados posibles: {known}.",
    "error.bad_user": "«{text}» no es un usuario de Matrix: escríbelo como @nombre:servidor.",
    "error.bad_queue": "No existe la cola «{queue}». Colas: {known}.",
    "error.bad_address": "«{text}» no es una dirección de correo utilizable ({reason}).",
    "address.needs_smtputf8": "tiene caracteres no ASCII antes de la @, y no enviamos correo internacionalizado (SMTPUTF8)",
    "address.reserved_domain": "el dominio es un nombre reservado que no recibe correo",
    "address.quoted": "no aceptamos la parte anterior a la @ entre comillas",
    "address.no_at": "le falta la @",
    "address.too_long": "es demasiado larga",
    "address.bad_domain": "la parte posterior a la @ no es un dominio válido",
    "address.bad_dots": "tiene puntos mal colocados (dos seguidos, o al principio o al final)",
    "address.bad_local": "la parte anterior a la @ tiene caracteres no permitidos o está vacía",
    "address.invalid": "no tiene la forma nombre@dominio",
    "error.bad_cc_argument": (
        "«{text}»: escribe +dirección para añadir un participante o -dirección para quitarlo."
    ),
    "error.missing_participants": "Faltan las direcciones que hay que añadir o quitar.",
    "error.too_many_participants": "Como máximo {limit} direcciones a la vez.",
    "error.own_address_participant": (
        "{address} es la dirección del propio soporte: no puede ser participante."
    ),
    "error.requestor_stays": (
        "{address} es el solicitante de {ticket}: no se puede quitar de los participantes."
    ),
    "error.add_and_remove": "{address} no se puede añadir y quitar a la vez.",
    "error.participants_unchanged": (
        "Los participantes de {ticket} ya son estos: nada que cambiar."
    ),
    "error.unexpected_argument": "!{command} no necesita nada más, y sobra «{text}».",
    "error.bad_list_argument": (
        "«{word}» no es un filtro de !list: puedes poner una cola, estados, mine, unowned o all."
    ),
    "error.not_found": "No existe el ticket {ticket}.",
    "error.not_operator": "Solo los operadores del equipo de soporte pueden hacer esto.",
    "error.already_unowned": "{ticket} ya no tiene responsable.",
    "error.already_owner": "{owner} ya es responsable de {ticket}.",
    "error.missing_text": "Falta el texto: escríbelo después de la referencia del ticket.",
    "error.missing_title": "Falta el título nuevo.",
    "error.same_title": "{ticket} ya tiene este título.",
    "error.unknown_queue": "No existe la cola «{queue}». Colas: {known}.",
    "error.same_queue": "{ticket} ya está en la cola {queue}.",
    "error.back_to_new": (
        "{ticket} no puede volver al estado nuevo. "
        "Si quieres dejarlo sin responsable: !untake {ticket}"
    ),
    "error.same_status": "{ticket} ya tiene el estado {status}.",
    "error.no_unverified": (
        "{ticket} no tiene ningún correo de remitente no verificado que aceptar."
    ),
    "error.bad_search": (
        "La búsqueda contiene caracteres de control (como un carácter nulo) que no se pueden "
        "buscar: quítalos y vuelve a intentarlo."
    ),
    "error.bad_page": "Esa página no existe: el número de página es demasiado grande (máximo {max}).",
    "error.internal": (
        "Algo ha fallado por nuestra parte y lo hemos registrado. Vuelve a intentarlo "
        "dentro de un rato y, si sigue fallando, avisa a los administradores."
    ),
    "error.generic": "No se ha podido hacer ({code}).",
    "not_operator": (
        "Lo siento, solo los operadores del equipo de soporte pueden usar las órdenes del exobot."
    ),
    "direct_refusal": (
        "¡Hola! Solo trabajo en las salas del equipo de soporte de eXO. "
        "Si necesitas ayuda, escribe a {address}."
    ),
    "chat.open_room": (
        "⚠️ Esta sala es abierta (regla de entrada «{rule}»): cualquiera puede entrar, así "
        "que ser miembro no da derechos de operador a nadie. Hacedla solo por invitación (o "
        "con petición de entrada), o definid la lista de operadores en matrix.operators."
    ),
    "chat.login.link": (
        "Aquí tienes tu enlace para entrar en la web de soporte (un solo uso, caduca en "
        "{minutes} min): {url}"
    ),
    "chat.login.sent": "Te he enviado un enlace de entrada por mensaje directo.",
    "chat.login.no_web": "La web de soporte no está activada en este servidor.",
}

_EN: dict[str, str] = {
    "status.new": "new",
    "status.open": "open",
    "status.stalled": "stalled",
    "status.resolved": "resolved",
    "status.rejected": "rejected",
    "nobody": "nobody",
    "unknown": "(unknown)",
    "no_subject": "(no subject)",
    "requestor": "Requestor: {requestor}",
    "queue": "Queue: {queue}",
    "status": "Status: {status}",
    "owner": "Owner: {owner}",
    "attachments.one": "📎 1 attachment: {names}",
    "attachments.other": "📎 {count} attachments: {names}",
    "duration.now": "less than 1 min",
    "duration.minutes": "{n} min",
    "duration.hours": "{n} h",
    "duration.days.one": "{n} day",
    "duration.days.other": "{n} days",
    "root.comment": "💬 {actor} added an internal comment:",
    "entry.created": "Ticket created in queue {queue} for {requestor}",
    "entry.take": "{actor} took {ticket}",
    "entry.give": "{actor} assigned {ticket} to {owner}",
    "entry.untake": "{actor} left {ticket} without an owner",
    "entry.status": "{actor} changed the status of {ticket}: {from} → {to}",
    "entry.status_suffix": "{from} → {to}",
    "entry.title": "{actor} renamed {ticket}: “{from}” → “{to}”",
    "entry.queue": "{actor} moved {ticket} from queue {from} to queue {to}",
    "entry.comment": "💬 {actor} added an internal comment:",
    "entry.comment_saved": "Internal comment saved",
    "entry.reply": "✉️ {actor} replied to {to}:",
    "entry.reply_sent": "Reply sent to {to}",
    "entry.ack": "Acknowledgement sent to {to}",
    "entry.resolved_notice": "Resolution notice sent to {to}",
    "entry.resolved_notice_suffix": "resolution notice sent to {to}",
    "entry.mail_out": "Mail sent to {to}",
    "entry.mail_in": "📨 {sender} wrote:",
    "entry.automatic_in": "🤖 Automatic reply from {sender} (status unchanged):",
    "entry.unverified_in": (
        "⚠️ Mail from an unverified sender ({sender}): it has no effect until an "
        "operator accepts it with !accept {ticket}"
    ),
    "entry.bounce": "⚠️ One of our mails bounced: {recipients}{details}",
    "entry.accepted": "{actor} accepted the mail from {sender} as correspondence",
    "entry.accepted_cc": (
        "{actor} accepted the mail from {sender} as correspondence. "
        "Its Cc addresses were not made participants: {addresses} "
        "(to add one: !cc {ticket} +address)"
    ),
    "entry.body_truncated": "(Message cut short: the whole mail is kept as the original.)",
    "entry.cc_not_added": (
        "Cc addresses not made participants: {addresses} (to add one: !cc {ticket} +address)"
    ),
    "entry.participants_added": "{actor} added {added} to the participants of {ticket}",
    "entry.participants_removed": "{actor} removed {removed} from the participants of {ticket}",
    "entry.participants_both": (
        "{actor} added {added} to the participants of {ticket} and removed {removed}"
    ),
    "entry.cc_skipped": (
        "⚠️ {recipient} got no copy of the reply: no mail can be written to that address "
        "({error}). To remove it: !cc {ticket} -{recipient}"
    ),
    "entry.delivery_failed": "⚠️ Could not deliver the mail to {recipient}: {error}",
    "entry.alert_new": "⚠️ Alert: new ticket nobody has taken",
    "entry.alert_stalled": "⏰ Reminder: stalled ticket",
    "entry.other": "{actor}: {kind}",
    "opened": "🆕 Opened {ticket} «{title}»; its thread is in the {queue} room.",
    "moved": (
        "➡️ {ticket} moved from queue {old} to queue {new}. The thread continues in the {new} room."
    ),
    "alert": (
        "⚠️ {ticket} has been new for {duration} and nobody has taken it. "
        "Who can handle it? !take {ticket}"
    ),
    "alert_line": (
        "⚠️ {ticket} “{title}” has been waiting for {duration} ({status}) — !take {ticket}"
    ),
    "stalled_reminder": (
        "⏰ {ticket} has been stalled for {duration}. Pick it up again or close it? "
        "!open {ticket} · !resolve {ticket}"
    ),
    "stalled_line": "⏰ {ticket} “{title}” stalled for {duration} · owner: {owner}",
    "digest.title": "📊 Daily support digest — {date}",
    "digest.no_new": "No new tickets waiting 🎉",
    "digest.new_waiting.one": "⚠️ 1 new ticket waiting",
    "digest.new_waiting.other": "⚠️ {count} new tickets waiting",
    "digest.no_tickets": "No active tickets",
    "digest.oldest_new": "New tickets waiting the longest:",
    "digest.oldest_stalled": "Oldest stalled tickets:",
    "digest.item": "{ticket} “{title}” — {duration}",
    "quarantine.head": (
        "⚠️ A received mail could not be processed and was set aside (quarantine #{id})."
    ),
    "quarantine.details": "From: {sender} · Subject: {subject}",
    "mail.too_big.subject": "Message too big: {subject}",
    "quarantine.error": "Error: {error}",
    "quarantine.commands": (
        "To look at it: {show} · to try again: {retry} · to discard it: {discard}"
    ),
    "show.created": "Created {when} ({age} ago)",
    "show.last_mail": "Last mail from the requestor: {age} ago",
    "show.last_mail_never": "Last mail from the requestor: never",
    "history.title": "History of {ticket} “{title}”",
    "history.omitted.one": "(1 older entry left out)",
    "history.omitted.other": "({count} older entries left out)",
    "history.empty": "The history is empty",
    "list.title.one": "1 ticket:",
    "list.title.other": "{count} tickets:",
    "list.item": "{ticket} · {status} · {queue} · {owner} · {age} · {title}",
    "list.more": "… and {count} more",
    "list.empty": "No tickets",
    "search.title": "Results for “{words}”: {count}",
    "search.empty": "No tickets match “{words}”",
    "help.title": "exobot commands (inside a ticket's thread the reference can be left out):",
    "help.footer": (
        "References: {prefix}#310, {prefix} 310, ticket de {prefix} 310, #310 or 310. "
        "Details of one command: !help take"
    ),
    "help.also": "Also: {aliases}",
    "help.unknown": "I don't know the command “{topic}”. Type !help to see them all.",
    "help.usage.take": "!take {ref}",
    "help.usage.give": "!give {ref} @user:server",
    "help.usage.untake": "!untake {ref}",
    "help.usage.reply": "!reply {ref} text…",
    "help.usage.comment": "!comment {ref} text…",
    "help.usage.title": "!title {ref} new title",
    "help.usage.move": "!move {ref} queue",
    "help.usage.status": "!status {ref} status",
    "help.usage.open": "!open {ref}",
    "help.usage.stall": "!stall {ref}",
    "help.usage.resolve": "!resolve {ref}",
    "help.usage.reject": "!reject {ref}",
    "help.usage.show": "!show {ref}",
    "help.usage.history": "!history {ref}",
    "help.usage.list": "!list [queue] [status…] [mine|unowned|all]",
    "help.usage.search": "!search words…",
    "help.usage.new": "!new member@example.org title…",
    "help.usage.accept": "!accept {ref}",
    "help.usage.cc": "!cc {ref} +address -address…",
    "help.usage.login": "!login",
    "help.usage.help": "!help [command]",
    "help.desc.take": "Assigns the ticket to you (new → open).",
    "help.desc.give": "Assigns the ticket to someone else (new → open).",
    "help.desc.untake": "Leaves the ticket without an owner.",
    "help.desc.reply": "Mails the requestor; the text may span several lines (new → open).",
    "help.desc.comment": (
        "Saves an internal comment, never emailed. "
        "Plain messages in a ticket's thread are saved as comments too."
    ),
    "help.desc.title": "Renames the ticket: short and specific, to tell tickets apart.",
    "help.desc.move": "Moves the ticket to another queue (for example, tresoreria).",
    "help.desc.status": (
        "Changes the status: open, stalled, resolved or rejected. "
        "Resolved mails the requestor the notice; rejected mails nothing."
    ),
    "help.desc.open": "Sets the ticket open.",
    "help.desc.stall": "Parks the ticket, to pick it up later.",
    "help.desc.resolve": "Marks the ticket resolved and mails the requestor the notice.",
    "help.desc.reject": "Rejects the ticket without sending any mail.",
    "help.desc.show": "Shows the ticket's summary.",
    "help.desc.history": "Shows the ticket's history.",
    "help.desc.list": "Lists tickets; by default, the new and open ones.",
    "help.desc.search": "Searches tickets by their text.",
    "help.desc.new": (
        "Opens a ticket on someone's behalf (for example, after a phone call); "
        "the text may follow on the next lines."
    ),
    "help.desc.accept": (
        "Accepts the last mail from an unverified sender as correspondence "
        "and makes the sender a participant; that mail's Cc addresses are only listed."
    ),
    "help.desc.cc": (
        "Adds (+) or removes (-) participants: the addresses that get copies of the replies "
        "and may write to the ticket. The requestor cannot be removed."
    ),
    "help.desc.login": "Sends you a single-use link to the support website by direct message.",
    "help.desc.help": "Shows this help or the usage of one command.",
    "arg.text": "the text",
    "arg.title": "the title",
    "arg.user": "the user (@name:server)",
    "arg.queue": "the queue",
    "arg.status": "the status",
    "arg.words": "the words to search for",
    "arg.address": "the email address",
    "arg.participants": "the addresses (+address to add, -address to remove)",
    "arg.other": "an argument ({argument})",
    "error.usage": "Usage: {usage}",
    "error.unknown_command": "I don't know the command !{command}. Type !help to see the commands.",
    "error.missing_reference": (
        "!{command} needs a ticket reference (for example, {prefix}#3); "
        "inside a ticket's thread it can be left out."
    ),
    "error.bad_reference": (
        "“{text}” is not a valid ticket reference. Write it as {prefix}#310, {prefix} 310 or #310."
    ),
    "error.missing_argument": "!{command} is missing {argument}.",
    "error.bad_status": "I don't know the status “{word}”. Possible statuses: {known}.",
    "error.bad_user": "“{text}” is not a Matrix user: write it as @name:server.",
    "error.bad_queue": "There is no queue “{queue}”. Queues: {known}.",
    "error.bad_address": "“{text}” is not a usable email address ({reason}).",
    "address.needs_smtputf8": "it has non-ASCII characters before the @, and we do not send internationalised mail (SMTPUTF8)",
    "address.reserved_domain": "its domain is a reserved name that receives no mail",
    "address.quoted": "a quoted part before the @ is not accepted",
    "address.no_at": "it has no @",
    "address.too_long": "it is too long",
    "address.bad_domain": "the part after the @ is not a valid domain",
    "address.bad_dots": "it has misplaced dots (two in a row, or at the start or end)",
    "address.bad_local": "the part before the @ is empty or has characters that are not allowed",
    "address.invalid": "it is not of the form name@domain",
    "error.bad_cc_argument": (
        "“{text}”: write +address to add a participant or -address to remove one."
    ),
    "error.missing_participants": "Say which addresses to add or remove.",
    "error.too_many_participants": "At most {limit} addresses at a time.",
    "error.own_address_participant": (
        "{address} is the support address itself: it cannot be a participant."
    ),
    "error.requestor_stays": (
        "{address} is the requestor of {ticket}: it cannot be removed from the participants."
    ),
    "error.add_and_remove": "{address} cannot be added and removed at once.",
    "error.participants_unchanged": (
        "The participants of {ticket} are already so: nothing to change."
    ),
    "error.unexpected_argument": "!{command} takes nothing more, but got “{text}”.",
    "error.bad_list_argument": (
        "“{word}” is not a !list filter: use a queue, statuses, mine, unowned or all."
    ),
    "error.not_found": "There is no ticket {ticket}.",
    "error.not_operator": "Only the support team's operators can do this.",
    "error.already_unowned": "{ticket} already has no owner.",
    "error.already_owner": "{owner} already owns {ticket}.",
    "error.missing_text": "The text is missing: write it after the ticket reference.",
    "error.missing_title": "The new title is missing.",
    "error.same_title": "{ticket} already has that title.",
    "error.unknown_queue": "There is no queue “{queue}”. Queues: {known}.",
    "error.same_queue": "{ticket} is already in queue {queue}.",
    "error.back_to_new": (
        "{ticket} cannot go back to new. To leave it without an owner: !untake {ticket}"
    ),
    "error.same_status": "{ticket} is already {status}.",
    "error.no_unverified": "{ticket} has no mail from an unverified sender to accept.",
    "error.bad_search": (
        "The search holds control characters (such as a NUL character) that cannot be "
        "searched: remove them and try again."
    ),
    "error.bad_page": "There is no such page: the page number is too large (at most {max}).",
    "error.internal": (
        "Something went wrong on our side and it was logged. Please try again in a "
        "while and, if it keeps failing, tell the administrators."
    ),
    "error.generic": "That could not be done ({code}).",
    "not_operator": ("Sorry, only the support team's operators can use exobot's commands."),
    "direct_refusal": (
        "Hi! I only work in eXO's support team rooms. If you need help, please write to {address}."
    ),
    "chat.open_room": (
        "⚠️ This room is open (join rule “{rule}”): anybody can join it, so being a member "
        "gives nobody operator rights. Make it invite-only (or knock), or list the operators "
        "in matrix.operators."
    ),
    "chat.login.link": (
        "Here is your link to the support website (single use, expires in {minutes} min): {url}"
    ),
    "chat.login.sent": "I have sent you a login link by direct message.",
    "chat.login.no_web": "The support website is not enabled on this server.",
}

MESSAGES: dict[str, dict[str, str]] = {"ca": _CA, "es": _ES, "en": _EN}
LANGUAGES = tuple(MESSAGES)


def register(catalog: dict[str, dict[str, str]]) -> None:
    """Add an adapter's own messages (e.g. the web's); a key may be defined only once."""
    for language, entries in catalog.items():
        clash = set(entries) & set(MESSAGES[language])
        if clash:
            raise ValueError(f"messages defined twice: {sorted(clash)}")
        MESSAGES[language].update(entries)


def language_or_default(language: str | None) -> str:
    """A supported language: `language` itself, its base (`ca-ES` → `ca`) or the default."""
    if not language:
        return DEFAULT_LANGUAGE
    lowered = language.lower()
    if lowered in MESSAGES:
        return lowered
    base = lowered.replace("_", "-").split("-", 1)[0]
    return base if base in MESSAGES else DEFAULT_LANGUAGE


def template(language: str, key: str) -> str:
    """The template of `key` in `language`; falls back to English, then to the key itself."""
    language = language_or_default(language)
    found = MESSAGES[language].get(key)
    if found is not None:
        return found
    if STRICT:
        raise KeyError(f"message {key!r} missing in language {language!r}")
    log.warning("Message %r missing in language %r", key, language)
    return MESSAGES[FALLBACK_LANGUAGE].get(key, key)


class _Lenient(string.Formatter):
    """A formatter that shows a missing parameter as `{name}` instead of raising."""

    def get_value(self, key: int | str, args: object, kwargs: dict[str, object]) -> object:  # type: ignore[override]
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        return "{" + str(key) + "}"


_LENIENT = _Lenient()


def say(language: str, key: str, **params: object) -> str:
    """The message `key` in `language` (unknown language → Catalan), formatted with `params`."""
    text = template(language, key)
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError, AttributeError):
        if STRICT:
            raise
        return _LENIENT.format(text, **params)
