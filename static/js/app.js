// Keyboard shortcuts and small focus/busy helpers. htmx does the requests and swaps; this file
// only maps keys to the buttons htmx already drives, so everything also works by mouse.
(function () {
  "use strict";

  function prompt() { return document.getElementById("prompt"); }

  // UI text in the page's language, from data attributes the server put on <body>.
  function text(key, fallback) {
    return (document.body && document.body.dataset[key]) || fallback;
  }
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
    if (event.key === "Escape" && !(dialog() && dialog().open)) {
      var stop = document.querySelector(".streaming .stop-button");
      if (stop) {
        event.preventDefault();
        stop.click();
        return;
      }
      // Editing a turn or a picture: Escape cancels it (a second one leaves the prompt).
      var cancel = document.querySelector("#followup .cancel-mode");
      if (cancel && (event.target === field || !isTextField(event.target))) {
        event.preventDefault();
        cancel.click();
        return;
      }
      if (event.target === field) {
        field.blur();
        return;
      }
    }
    if (isTextField(event.target) || (dialog() && dialog().open)) return;
    if (event.key === "/" && field) {
      event.preventDefault();
      field.focus();
    } else if (event.key === "?") {
      event.preventDefault();
      openHelp();
    } else if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      moveInHistory(event.key === "j" ? 1 : -1);
    } else if (ACTIONS[event.key]) {
      // f: follow up (or a variation / edit of a picture), e: edit, r: regenerate; on the
      // entry holding focus, else on the newest result (on an entry's page, the turn shown).
      var entry = targetEntry();
      var control = entry && entry.querySelector(ACTIONS[event.key]);
      if (control) {
        event.preventDefault();
        control.click();
      }
    }
  });

  var ACTIONS = { f: ".followup-link", e: ".edit-link", r: ".regenerate-button" };

  function targetEntry() {
    var active = document.activeElement;
    var focused = active && active.closest && active.closest("article.entry");
    if (focused) return focused;
    var results = document.getElementById("results");
    if (results) return results.querySelector("article.entry");
    var all = document.querySelectorAll("article.entry");
    return document.querySelector("article.entry[aria-current]") || all[all.length - 1] || null;
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#shortcuts-open")) openHelp();
  });

  function isGenerateRequest(event) {
    var elt = event.detail && event.detail.elt;
    return elt && (elt.id === "generate-code" || elt.id === "generate-image");
  }

  // The prompt of the running code request: cleared from the box once its answer is stored,
  // unless the user has typed something else meanwhile.
  var submitted = null;

  // While a generation runs the Results region is busy; a finished one leaves nothing busy.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!isGenerateRequest(event)) return;
    var field = prompt();
    submitted = field ? field.value : null;
    var results = document.getElementById("results");
    if (results) results.setAttribute("aria-busy", "true");
  });

  function addCopyButtons(root) {
    if (!root.querySelectorAll || !navigator.clipboard) return;
    root.querySelectorAll(".markdown pre").forEach(function (pre) {
      if (pre.querySelector(".copy-code")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code secondary";
      button.textContent = text("copy", "Copy");
      button.setAttribute("aria-label", text("copyLabel", "Copy code"));
      pre.appendChild(button);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".copy-code");
    if (!button) return;
    var code = button.parentElement.querySelector("code");
    navigator.clipboard.writeText(code ? code.textContent : "").then(function () {
      button.textContent = text("copied", "Copied");
      window.setTimeout(function () { button.textContent = text("copy", "Copy"); }, 1500);
    });
  });

  // New content: copy buttons for code blocks; a finished streamed answer clears the prompt.
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    addCopyButtons(elt);
    if (elt.matches && elt.matches("article.entry.status-done") && submitted !== null) {
      var field = prompt();
      if (field && field.value === submitted) field.value = "";
      submitted = null;
    }
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
    submitted = null;
  });
  // The server itself could not be reached (offline, restarted): say so, keep the prompt.
  document.addEventListener("htmx:sendError", function (event) {
    if (!isGenerateRequest(event)) return;
    var results = document.getElementById("results");
    if (!results) return;
    var box = document.createElement("div");
    box.className = "error-box";
    box.setAttribute("role", "alert");
    box.textContent = navigator.onLine === false
      ? text("offlineMessage", "You are offline. Your prompt is kept; generate again when the connection is back.")
      : text("unreachableMessage", "Could not reach the server. Your prompt is kept; try again when it is back.");
    results.prepend(box);
  });

  // Offline banner, following the browser's connection state.
  function showConnection() {
    var banner = document.getElementById("offline-banner");
    if (banner) banner.hidden = navigator.onLine !== false;
  }
  window.addEventListener("online", showConnection);
  window.addEventListener("offline", showConnection);
  showConnection();

  // Colour scheme: the system's, until the toggle stores a choice for this browser.
  function effectiveTheme() {
    var chosen = document.documentElement.getAttribute("data-theme");
    if (chosen) return chosen;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function showTheme() {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", effectiveTheme() === "dark" ? "true" : "false");
  }
  document.addEventListener("click", function (event) {
    if (!(event.target.closest && event.target.closest("#theme-toggle"))) return;
    var next = effectiveTheme() === "dark" ? "light" : "dark";
    document.documentElement.setAttribute("data-theme", next);
    try { window.localStorage.setItem("theme", next); } catch (error) { /* not remembered */ }
    showTheme();
  });
  showTheme();

  // j / k (outside text fields) move through the History links, newest to oldest and back.
  function moveInHistory(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#history-days a, .history-page #history-content a"));
    if (!links.length) return;
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
  }

  // Pages may be kept by this browser (private, no-cache) for offline reading, which also makes
  // them eligible for the back/forward cache: a page restored from it would show a stale
  // history, so it is loaded again (through the service worker: fresh online, kept offline).
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });

  // Installable app: the service worker caches the shell and visited pages for offline use.
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js").catch(function () { /* works without it */ });
  }
  document.addEventListener("submit", function (event) {
    if (event.target.matches && event.target.matches("form[action$='/logout'], form[action$='/logout/everywhere']") && navigator.serviceWorker &&
        navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage("clear-history");
    }
  });
})();
