// Keyboard shortcuts and small focus/busy helpers. htmx does the requests and swaps; this file
// only maps keys to the buttons htmx already drives, so everything also works by mouse.
(function () {
  "use strict";

  function prompt() { return document.getElementById("prompt"); }
  function dialog() { return document.getElementById("shortcuts"); }

  function isTextField(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable ||
      (tag === "INPUT" && !/^(button|submit|reset|checkbox|radio)$/i.test(el.type));
  }

  function generate(buttonId) {
    var button = document.getElementById(buttonId);
    if (button && !button.disabled) button.click();
  }

  function openHelp() {
    var d = dialog();
    if (d && !d.open) d.showModal();
  }

  document.addEventListener("keydown", function (event) {
    var field = prompt();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target === field) {
      event.preventDefault();
      generate(event.shiftKey ? "generate-image" : "generate-code");
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && event.target === field) {
      field.blur();
      return;
    }
    if (isTextField(event.target) || (dialog() && dialog().open)) return;
    if (event.key === "/" && field) {
      event.preventDefault();
      field.focus();
    } else if (event.key === "?") {
      event.preventDefault();
      openHelp();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#shortcuts-open")) openHelp();
  });

  function isGenerateRequest(event) {
    var elt = event.detail && event.detail.elt;
    return elt && (elt.id === "generate-code" || elt.id === "generate-image");
  }

  // While a generation runs the Results region is busy; a finished one leaves nothing busy.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!isGenerateRequest(event)) return;
    var results = document.getElementById("results");
    if (results) results.setAttribute("aria-busy", "true");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isGenerateRequest(event)) return;
    var results = document.getElementById("results");
    if (results) results.removeAttribute("aria-busy");
    var field = prompt();
    if (field) field.focus();
  });

  // The server sends this event (HX-Trigger) only with a stored answer; on any error the typed
  // prompt stays in the box.
  document.addEventListener("generated", function () {
    var field = prompt();
    if (field) field.value = "";
  });
  // The server itself could not be reached (offline, restarted): say so, keep the prompt.
  document.addEventListener("htmx:sendError", function (event) {
    if (!isGenerateRequest(event)) return;
    var results = document.getElementById("results");
    if (!results) return;
    var box = document.createElement("div");
    box.className = "error-box";
    box.setAttribute("role", "alert");
    box.textContent = "Could not reach the server. Your prompt is kept; try again when it is back.";
    results.prepend(box);
  });
})();
