// Upload with drag and drop or the picker, showing progress, then open the
// build page where the log streams live.
(function () {
  "use strict";
  const form = document.getElementById("upload");
  if (!form) return;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("source");
  const bar = document.getElementById("progress");
  const status = document.getElementById("upload-status");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function send(file) {
    const data = new FormData();
    data.append("source", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading " + file.name + "…";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (xhr.status === 201 && body.url) {
        bar.value = 100;
        status.textContent = "Uploaded. Opening build #" + body.number + "…";
        window.location.assign(body.url);
      } else {
        bar.hidden = true;
        status.textContent = body.message || ("Upload failed (HTTP " + xhr.status + ").");
        status.className = "flash error";
      }
    };
    xhr.onerror = function () {
      bar.hidden = true;
      status.textContent = "The upload did not reach the server; check your connection and retry.";
      status.className = "flash error";
    };
    xhr.send(data);
  }

  input.addEventListener("change", function () { if (input.files.length) send(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (ev) {
    zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (ev) {
    zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
  });
})();
