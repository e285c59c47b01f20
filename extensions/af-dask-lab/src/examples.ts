// The launcher card "Facility examples": opens ~/examples (kept up to date by nbgitpuller when the
// server starts, facility/examples.py) in the file browser and its first-steps notebook.
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';

export const EXAMPLES_FOLDER = 'examples';
export const FIRST_STEPS = `${EXAMPLES_FOLDER}/first_steps.ipynb`;
const COMMAND = 'af-examples:open';

const examplesIcon = new LabIcon({
  name: 'af-dask-lab:examples',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M4 4h7l2 2h7v13a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1z" opacity=".35"/>' +
    '<path d="M8 10h8v1.6H8zm0 3h8v1.6H8zm0 3h5v1.6H8z"/></g></svg>'
});

export const examplesPlugin: JupyterFrontEndPlugin<void> = {
  id: 'af-dask-lab:examples',
  description: 'A launcher card that opens the facility examples in your home.',
  autoStart: true,
  optional: [ILauncher],
  activate: (app: JupyterFrontEnd, launcher: ILauncher | null) => {
    app.commands.addCommand(COMMAND, {
      label: 'Facility examples',
      caption: 'Open the facility examples in ~/examples and the first-steps notebook',
      icon: examplesIcon,
      execute: async () => {
        try {
          await app.serviceManager.contents.get(FIRST_STEPS, { content: false });
        } catch {
          await showErrorMessage(
            'Examples not found',
            `There is no ${FIRST_STEPS} in your home yet: the facility copies its examples there when ` +
              'your server starts. Restart your server from the hub (File > Hub Control Panel) to get them.'
          );
          return;
        }
        // filebrowser:open-path shows the folder in the file browser and opens the notebook.
        await app.commands.execute('filebrowser:open-path', { path: FIRST_STEPS });
      }
    });
    if (launcher) {
      launcher.add({ command: COMMAND, category: 'Analysis facility', rank: 0 });
    }
  }
};
