// Runs before the page is drawn: applies the colour scheme chosen in this browser (if any),
// so a dark-mode choice never flashes light. Without a choice the system setting applies.
(function () {
  "use strict";
  try {
    var theme = window.localStorage.getItem("theme");
    if (theme === "dark" || theme === "light") document.documentElement.setAttribute("data-theme", theme);
  } catch (error) {
    // Storage may be blocked (privacy settings): follow the system.
  }
})();
