"""Image answers: a picture generated from the prompt, or an edit of the picture sent with it,
stored as the entry's own file (app.images). The image APIs take no conversation, so only the
prompt (and picture) count."""

from __future__ import annotations

import logging
import time
from functools import partial

from .. import image_options
from ..history import Entry
from ..image_options import ImageOptions
from ..images import ImageStoreUnavailable, StoredImage
from ..images.names import stored_url
from ..messages import failure as failure_message
from ..messages import message_of
from ..providers import ImageAnswer, UpstreamError
from .base import GeneratorBase, Prompt, log_finished
from .errors import ImageNotStored, PromptError

log = logging.getLogger("app.generation")


class ImageAnswers(GeneratorBase):
    """Answers from the image model."""

    def _make_image(self, entry: Entry, options: ImageOptions, deadline: float) -> tuple[str, StoredImage]:
        """Ask for the entry's picture (the provider hands back its bytes) and store it as the
        entry's own file; returns the model that made it and the stored image."""
        answer = self._with_retries(lambda timeout: self._image_answer(entry, options, timeout), deadline)
        log.debug(
            "Antwort von OpenAI erhalten: image as %s",
            "URL" if answer.url else f"{len(answer.data)} bytes",
        )
        return answer.model, self.images.save(entry.id, answer.data)

    def _image_answer(self, entry: Entry, options: ImageOptions, timeout: float) -> ImageAnswer:
        """A new picture for `entry`: generated from its prompt, or its input picture edited."""
        if entry.input_image:
            picture = self.images.read(entry.input_image)
            return self.provider.edit_image(entry.prompt, picture, options, timeout)
        return self.provider.generate_image(entry.prompt, options, timeout)

    def image_options(
        self, size: object = None, quality: object = None, style: object = None
    ) -> ImageOptions:
        """Validate requested image options for the image model; PromptError says what is wrong."""
        try:
            return image_options.choose(
                self.provider.image_model, self.settings.image_size, size, quality, style
            )
        except ValueError as e:
            raise PromptError(message_of(e)) from None

    def generate_image(self, prompt: Prompt, options: ImageOptions | None = None) -> Entry:
        """Generate, validate and store one image for `prompt` as this entry's own file.

        With a `parent` (an image entry) and no picture it is a variation: a new image from the
        edited prompt, linked to the earlier one. With an `input_image` it is an edit: the stored
        picture and the prompt go to the image model's edits endpoint. The image APIs take no
        conversation, so only the prompt (and picture) count.
        """
        options = options or self.image_options()
        started = time.monotonic()
        entry = self._begin("image", prompt, self.provider.image_model)
        log.debug("Sende Anfrage an OpenAI API... (image, model %s, %s)", entry.model, options.as_dict())
        deadline = started + self.settings.upstream_timeout
        try:
            model, stored = self._make_image(entry, options, deadline)
        except UpstreamError as error:
            log.error("Fehler bei der Bildgenerierung: %s", error.message)
            raise self._fail(entry, error, started) from None
        except ImageStoreUnavailable:
            log.error("Fehler bei der Bildgenerierung: the image store cannot be reached")
            message = failure_message("image_not_stored")
            raise self._fail(entry, ImageNotStored(message), started) from None
        except Exception as e:
            log.exception("Fehler bei der Bildgenerierung: %s", type(e).__name__)
            raise self._fail(entry, UpstreamError(failure_message("image_failed")), started) from None
        finished = self._record(
            partial(
                self.chatlog.finish,
                entry,
                stored_url(stored.name),
                model=model,
                image_file=stored.name,
                options=options.as_dict(),
                dimensions=[stored.width, stored.height],
            )
        )
        log_finished(finished, started, image_file=stored.name)
        if finished.deleted:
            self.images.delete(stored.name)  # deleted while it was being made: keep nothing
        return finished
