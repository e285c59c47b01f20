// A notebook's kernel stopped by the server's memory limit: the limit in plain words, not
// JupyterLab's "The kernel ... appears to have died".
//
// JupyterLab's NotebookPanel shows that dialog when its session's status becomes 'autorestarting'
// (jupyter-server saw the kernel's process end and starts it again). On the same status this asks
// the server extension whether the memory limit stopped the kernel (af_dask_lab/kernel_stops.py);
// if so it closes JupyterLab's dialog and shows the facility's own. A kernel that died for another
// reason keeps JupyterLab's dialog.
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ISessionContext, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { call } from './api';

interface IKernelStop {
  memory_limit: boolean;
  limit: string | null;
  title?: string;
  message?: string;
}

/** JupyterLab's dialogs saying this session's kernel died, as it words them (translated or not). */
function genericDialogs(titleText: string, bodyText: string): Dialog<unknown>[] {
  const found: Dialog<unknown>[] = [];
  Dialog.tracker.forEach(dialog => {
    const title = dialog.node.querySelector('.jp-Dialog-header')?.textContent?.trim();
    if (title === titleText && (dialog.node.textContent ?? '').includes(bodyText)) {
      found.push(dialog);
    }
  });
  return found;
}

function messageBody(stop: IKernelStop): Widget {
  const body = new Widget();
  body.addClass('af-MemoryStop');
  const words = document.createElement('p');
  words.textContent = stop.message ?? '';
  body.node.appendChild(words);
  return body;
}

export const memoryStopPlugin: JupyterFrontEndPlugin<void> = {
  id: 'af-dask-lab:memory-stop',
  description: "Says in plain words when the server's memory limit stopped a notebook's kernel.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ITranslator],
  activate: (_app: JupyterFrontEnd, notebooks: INotebookTracker, translator: ITranslator | null) => {
    const trans = (translator ?? nullTranslator).load('jupyterlab');
    const explaining = new WeakSet<ISessionContext>();

    const explain = async (context: ISessionContext) => {
      const kernelId = context.session?.kernel?.id;
      if (!kernelId || explaining.has(context)) {
        return;
      }
      explaining.add(context);
      try {
        const stop = await call<IKernelStop>(`kernels/${encodeURIComponent(kernelId)}/last-stop`);
        if (!stop.memory_limit) {
          return; // another reason: JupyterLab's dialog stays
        }
        const path = context.session?.path ?? '';
        const title = trans.__('Kernel Restarting');
        const said = trans.__('The kernel for %1 appears to have died. It will restart automatically.', path);
        genericDialogs(title, said).forEach(dialog => dialog.reject());
        await showDialog({
          title: stop.title ?? 'Kernel stopped at the memory limit',
          body: messageBody(stop),
          buttons: [Dialog.okButton({ label: 'OK' })]
        });
      } catch {
        // The server does not answer (it may be stopping): JupyterLab's dialog says enough.
      } finally {
        explaining.delete(context);
      }
    };

    notebooks.widgetAdded.connect((_, panel) => {
      panel.sessionContext.statusChanged.connect((context, status) => {
        if (status === 'autorestarting') {
          void explain(context);
        }
      });
    });
  }
};
