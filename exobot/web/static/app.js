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
