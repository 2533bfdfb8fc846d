// Small enhancements only: every page and action works without this file.
"use strict";

// Forms marked data-confirm (discarding a quarantined mail) ask before they are sent.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // A second click while the first submission is on its way would send the form twice
  // (the server acts once anyway, thanks to the form's nonce): disable its buttons.
  if (form.method.toLowerCase() === "post") {
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
      });
    }, 0);
  }
});

// Coming back to a page from the browser's cache: its buttons work again.
window.addEventListener("pageshow", function (event) {
  if (!event.persisted) return;
  document.querySelectorAll("button[type=submit][disabled]").forEach(function (button) {
    button.disabled = false;
  });
});

// The ticket list's filters: folded on a phone, open (one line) on a wide screen.
(function () {
  var panel = document.querySelector("details.filter-panel");
  if (panel && window.matchMedia("(min-width: 60rem)").matches) panel.open = true;
})();

// A text sent from a ticket's page (a reply, a comment) is kept in this tab until the page
// says what became of it: when the session ended while it was written, the login comes back
// to the ticket and the text is put back in its box instead of being lost. It is dropped as
// soon as a page answers its form (sent: "?done=…"; refused: the page at the form's own
// address, the text kept by the server), and never put back where the history already shows
// it: a sent text is never offered again.
(function () {
  var PREFIX = "exobot-draft:";
  var MAX_AGE = 12 * 3600 * 1000; // a session's length
  // The ticket's action forms only: each answers with "?done=<action>" or at its own address.
  var TICKET_ACTION = /^\/tickets\/\d+\/[\w-]+$/;

  function ticketAction(form) {
    var path = new URL(form.action).pathname;
    return form.method.toLowerCase() === "post" && TICKET_ACTION.test(path);
  }

  var store;
  try {
    store = window.sessionStorage;
  } catch (error) {
    return;
  }
  if (!store) return;

  function forget(key) {
    try {
      store.removeItem(key);
    } catch (error) { /* nothing to forget */ }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    if (!ticketAction(form)) return;
    var texts = {};
    var any = false;
    form.querySelectorAll("textarea[name]").forEach(function (box) {
      if (box.value.trim()) {
        texts[box.name] = box.value;
        any = true;
      }
    });
    if (!any) return;
    try {
      store.setItem(PREFIX + form.action, JSON.stringify({ at: Date.now(), texts: texts }));
    } catch (error) { /* storage full or refused: the form is sent all the same */ }
  });

  var here = window.location.origin + window.location.pathname;
  var done = new URLSearchParams(window.location.search).get("done") || "";
  var shown = [];
  document.querySelectorAll(".history .body").forEach(function (body) {
    shown.push(body.textContent.trim());
  });
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    if (!ticketAction(form)) return;
    var key = PREFIX + form.action;
    var name = form.action.split("/").pop();
    var kept;
    try {
      kept = JSON.parse(store.getItem(key) || "null");
    } catch (error) {
      kept = null;
    }
    if (!kept) return;
    var answered = form.action === here || done === name || done.indexOf(name + "_") === 0;
    if (answered || !kept.texts || Date.now() - kept.at > MAX_AGE) {
      forget(key);
      return;
    }
    Object.keys(kept.texts).forEach(function (field) {
      var box = form.querySelector("textarea[name='" + field + "']");
      var text = kept.texts[field];
      if (box && !box.value.trim() && shown.indexOf(text.trim()) === -1) box.value = text;
    });
    forget(key);
  });
})();
