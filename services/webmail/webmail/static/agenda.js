// The calendar pages' light JavaScript; every page works without it.
// - the "see availability" link of the event form follows the participants and date typed in;
// - deleting asks for a confirmation;
// - on the hour grid (wide screens), a click on a free quarter hour opens the new-event form at that time
//   (the "Ajouter" link of each day is the keyboard's way); an event of one's own dragged with the mouse to
//   another day or time is moved there (only that occurrence of a series, after a confirmation), through
//   the same POST as the event page's "Déplacer" form, which is the keyboard's way.
(() => {
  const link = document.getElementById("lien-disponibilites");
  const participants = document.getElementById("champ-participants");
  const day = document.getElementById("champ-date_debut");
  if (link && participants) {
    const update = () => {
      const params = new URLSearchParams();
      params.set("participants", participants.value.split(/[\s,;]+/).filter(Boolean).join(" "));
      if (day && day.value) params.set("date", day.value);
      link.href = "/agenda/disponibilites?" + params.toString();
    };
    participants.addEventListener("input", update);
    if (day) day.addEventListener("input", update);
  }
  // The time ("HH:MM") of the quarter hour at `offset` pixels below the top of a day's grid: the quarter the
  // offset falls in (`Math.floor`, a click) or the nearest quarter line (`Math.round`, a dropped event's top).
  const timeAt = (grid, offset, rounding) => {
    const rows = Number(grid.dataset.quarts);
    const quarter = Math.max(0, Math.min(rows - 1, rounding((offset / grid.clientHeight) * rows)));
    const minutes = Number(grid.dataset.premiereHeure) * 60 + quarter * 15;
    return String(Math.floor(minutes / 60)).padStart(2, "0") + ":" + String(minutes % 60).padStart(2, "0");
  };
  for (const grid of document.querySelectorAll(".agenda-liste--heures[data-jour]")) {
    grid.addEventListener("click", (event) => {
      if (event.target !== grid || getComputedStyle(grid).display !== "grid") return;
      const debut = `${grid.dataset.jour}T${timeAt(grid, event.offsetY, Math.floor)}`;
      window.location.href = "/agenda/nouveau?" + new URLSearchParams({ debut });
    });
  }
  const csrf = document.querySelector('meta[name="csrf-token"]');
  for (const item of document.querySelectorAll(".agenda-liste--heures > li[data-deplacer]")) {
    const link = item.querySelector("a");
    let drag = null;
    link.addEventListener("dragstart", (event) => event.preventDefault());
    link.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || event.pointerType !== "mouse") return;
      if (getComputedStyle(item.parentElement).display !== "grid") return;
      drag = { x: event.clientX, y: event.clientY, grab: event.clientY - item.getBoundingClientRect().top };
      link.setPointerCapture(event.pointerId);
    });
    link.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 6) return;
      drag.moved = true;
      item.classList.add("agenda-deplacement");
      item.style.transform = `translate(${dx}px, ${dy}px)`;
    });
    const drop = async (event) => {
      const done = drag;
      drag = null;
      item.style.transform = "";
      item.classList.remove("agenda-deplacement");
      if (!done || !done.moved || event.type !== "pointerup") return;
      // The click that ends a drag does not open the event (a click fires, if at all, before any timer).
      const swallow = (click) => click.preventDefault();
      link.addEventListener("click", swallow, { once: true });
      setTimeout(() => link.removeEventListener("click", swallow), 0);
      const grid = document.elementsFromPoint(event.clientX, event.clientY)
        .filter((element) => !item.contains(element))
        .map((element) => element.closest(".agenda-liste--heures[data-jour]"))
        .find(Boolean);
      if (!grid) return;
      const day = grid.dataset.jour;
      const time = timeAt(grid, event.clientY - done.grab - grid.getBoundingClientRect().top, Math.round);
      if (`${day}T${time}` === item.dataset.debut) return;
      const series = item.hasAttribute("data-serie");
      if (series && !window.confirm("Déplacer seulement cette occurrence ? Pour toute la série, utilisez « Déplacer » sur la page de l'événement.")) return;
      const form = new FormData();
      form.set("csrf_token", csrf ? csrf.content : "");
      form.set("date", day);
      form.set("heure", time);
      form.set("occurrence", item.dataset.occurrence);
      form.set("portee", series ? "occurrence" : "serie");
      try {
        // The answer is a redirection to the event: not followed, so that its message shows here.
        await fetch(item.dataset.deplacer, { method: "POST", body: form, redirect: "manual", credentials: "same-origin" });
      } finally {
        window.location.reload();  // the week as stored, with the message (moved, or why not)
      }
    };
    link.addEventListener("pointerup", drop);
    link.addEventListener("pointercancel", drop);
  }
  for (const form of document.querySelectorAll("form[data-confirmer]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirmer)) event.preventDefault();
    });
  }
})();
