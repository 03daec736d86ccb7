// The calendar pages' light JavaScript; every page works without it.
// - the "see availability" link of the event form follows the participants and date typed in;
// - deleting asks for a confirmation.
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
  for (const form of document.querySelectorAll("form[data-confirmer]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirmer)) event.preventDefault();
    });
  }
})();
