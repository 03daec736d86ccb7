// The calendar pages' light JavaScript; every page works without it.
// - the "see availability" link of the event form follows the participants and date typed in;
// - deleting asks for a confirmation;
// - on the hour grid (wide screens), a click on a free quarter hour opens the new-event form at that time
//   (the "Ajouter" link of each day is the keyboard's way).
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
  for (const grid of document.querySelectorAll(".agenda-liste--heures[data-jour]")) {
    grid.addEventListener("click", (event) => {
      if (event.target !== grid || getComputedStyle(grid).display !== "grid") return;
      const rows = Number(grid.dataset.quarts);
      const quarter = Math.min(rows - 1, Math.floor((event.offsetY / grid.clientHeight) * rows));
      const minutes = Number(grid.dataset.premiereHeure) * 60 + quarter * 15;
      const time = String(Math.floor(minutes / 60)).padStart(2, "0") + ":" + String(minutes % 60).padStart(2, "0");
      window.location.href = "/agenda/nouveau?" + new URLSearchParams({ debut: grid.dataset.jour + "T" + time });
    });
  }
  for (const form of document.querySelectorAll("form[data-confirmer]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirmer)) event.preventDefault();
    });
  }
})();
